//! `Body<T>`: a JSON request body that must be an object. actix's `Json<T>`
//! alone would also accept `[…]` for a struct (serde's sequence form), which
//! the contract's strict bodies rule out.

use crate::error::Error;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
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
        // Media type, size and syntax errors come from `Json` (see `errors::json_error`).
        let object = web::Json::<Map<String, Value>>::from_request(req, payload);
        Box::pin(async move {
            let object = object.await?.into_inner();
            serde_json::from_value(Value::Object(object))
                .map(Body)
                .map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")).into())
        })
    }
}
