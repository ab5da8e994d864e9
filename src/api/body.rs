//! `Body<T>`: a JSON request body that must be an object. actix's `Json<T>`
//! alone would also accept `[…]` for a struct (serde's sequence form), which
//! the contract's strict bodies rule out.

use crate::error::Error;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{mime, web, FromRequest, HttpMessage, HttpRequest};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::future::Future;
use std::pin::Pin;

pub struct Body<T>(pub T);

/// Like `Body`, for requests whose every field is optional: a request with
/// no body at all (no bytes, whatever its `Content-Type`) counts as `{}`.
pub struct OptionalBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for OptionalBody<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let headers = req.headers();
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let bodiless = !headers.contains_key(header::TRANSFER_ENCODING) && length.unwrap_or(0) == 0;
        if bodiless {
            let empty = serde_json::from_value(Value::Object(Map::new()))
                .map(OptionalBody)
                .map_err(|e| Error::BadRequest(format!("a body is required: {e}")).into());
            return Box::pin(std::future::ready(empty));
        }
        let body = Body::<T>::from_request(req, payload);
        Box::pin(async move { body.await.map(|Body(inner)| OptionalBody(inner)) })
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        // `application/json` only, parameters such as charset allowed (actix's
        // `Json` would also take `text/json` and `…+json`).
        let json = matches!(req.mime_type(), Ok(Some(m))
            if m.type_() == mime::APPLICATION && m.subtype() == mime::JSON && m.suffix().is_none());
        if !json {
            let refused =
                Error::UnsupportedMediaType("the body must be sent as application/json".into());
            return Box::pin(std::future::ready(Err(refused.into())));
        }
        // Size and syntax errors come from `Json` (see `errors::json_error`).
        let object = web::Json::<StrictObject>::from_request(req, payload);
        Box::pin(async move {
            let object = object.await?.into_inner().0;
            serde_json::from_value(Value::Object(object))
                .map(Body)
                .map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")).into())
        })
    }
}

/// The only body field to which the contract gives `null` a meaning
/// (`snapshot_plan: null` clears a plan's link); anywhere else `null` is a
/// `400`, not "absent".
const NULLABLE: &[&str] = &["snapshot_plan"];

/// A JSON object whose keys are all different (`{"slug":"a","slug":"b"}` is
/// refused instead of keeping the last) and whose values are not `null`
/// but where `NULLABLE` says. Anything but an object is refused.
struct StrictObject(Map<String, Value>);

impl<'de> serde::Deserialize<'de> for StrictObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StrictObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<StrictObject, A::Error> {
                let mut object = Map::new();
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    if object.contains_key(&key) {
                        return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
                    }
                    if value.is_null() && !NULLABLE.contains(&key.as_str()) {
                        return Err(serde::de::Error::custom(format!(
                            "`{key}` may not be null (leave it out instead)"
                        )));
                    }
                    object.insert(key, value);
                }
                Ok(StrictObject(object))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::StrictObject;

    #[test]
    fn objects_with_a_key_twice_are_refused() {
        let parse = |text: &str| serde_json::from_str::<StrictObject>(text).map(|o| o.0);
        assert_eq!(
            parse(r#"{"slug":"a","name":"b"}"#).map(|o| o.len()).ok(),
            Some(2)
        );
        let twice = parse(r#"{"slug":"a","slug":"b"}"#)
            .err()
            .map(|e| e.to_string());
        assert!(twice.is_some_and(|e| e.contains("duplicate key `slug`")));
        assert!(parse(r#"["slug","a"]"#).is_err());
        let null = parse(r#"{"status":null}"#).err().map(|e| e.to_string());
        assert!(null.is_some_and(|e| e.contains("`status` may not be null")));
        assert!(
            parse(r#"{"snapshot_plan":null}"#).is_ok(),
            "null clears the link"
        );
        assert!(parse("null").is_err());
    }
}
