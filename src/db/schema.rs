//! Diesel table definitions, shared by SQLite and PostgreSQL (the migrations
//! in `migrations/sqlite` and `migrations/postgres` create the same columns).

diesel::table! {
    projects (id) {
        id -> Text,
        slug -> Text,
        name -> Text,
        auto_promote -> Bool,
        current_snapshot_id -> Nullable<Text>,
        current_seq -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        retention_keep_active -> Nullable<Integer>,
        retention_terminal_after -> Nullable<BigInt>,
    }
}

diesel::table! {
    plans (id) {
        id -> Text,
        project_id -> Text,
        slug -> Text,
        name -> Text,
        status -> Text,
        snapshot_plan_id -> Nullable<Text>,
        snapshot_allowed -> Bool,
        arch -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    snapshots (id) {
        id -> Text,
        project_id -> Text,
        status -> Text,
        source -> Nullable<Text>,
        build_id -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        pinned -> Bool,
    }
}

diesel::table! {
    images (id) {
        id -> Text,
        snapshot_id -> Text,
        project_id -> Text,
        plan_id -> Text,
        status -> Text,
        job_id -> Nullable<Text>,
        heartbeat_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        artifact_digest -> Nullable<Text>,
        artifact_size -> Nullable<BigInt>,
        artifact_media_type -> Nullable<Text>,
        artifact_uploaded_at -> Nullable<Timestamp>,
        log_tail -> Nullable<Text>,
        arch -> Text,
    }
}

diesel::table! {
    events (id) {
        id -> Text,
        at -> Timestamp,
        kind -> Text,
        project_id -> Text,
        snapshot_id -> Nullable<Text>,
        image_id -> Nullable<Text>,
        from_value -> Nullable<Text>,
        to_value -> Nullable<Text>,
        reason -> Nullable<Text>,
        actor -> Nullable<Text>,
        seq -> Nullable<BigInt>,
    }
}

diesel::table! {
    uploads (id) {
        id -> Text,
        image_id -> Text,
        offset_bytes -> BigInt,
        media_type -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    blobs (digest) {
        digest -> Text,
        size -> BigInt,
        last_used_at -> Timestamp,
        generation -> Text,
    }
}

diesel::table! {
    upload_parts (upload_id, offset_bytes) {
        upload_id -> Text,
        offset_bytes -> BigInt,
        length -> BigInt,
        name -> Text,
    }
}

diesel::table! {
    tokens (id) {
        id -> Text,
        name -> Text,
        secret_hash -> Text,
        role -> Text,
        created_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
        scoped -> Bool,
    }
}

diesel::table! {
    token_projects (token_id, project_id) {
        token_id -> Text,
        project_id -> Text,
    }
}

diesel::table! {
    pointer_moves (project_id, seq) {
        project_id -> Text,
        seq -> BigInt,
        from_snapshot_id -> Nullable<Text>,
        to_snapshot_id -> Nullable<Text>,
        reason -> Text,
        actor -> Nullable<Text>,
        at -> Timestamp,
    }
}

diesel::joinable!(upload_parts -> uploads (upload_id));

diesel::allow_tables_to_appear_in_same_query!(
    projects,
    plans,
    snapshots,
    images,
    events,
    uploads,
    blobs,
    tokens,
    token_projects,
    pointer_moves,
    upload_parts
);

diesel::table! {
    feed_position (id) {
        id -> Integer,
        last_seq -> BigInt,
        expired_through -> BigInt,
    }
}

diesel::table! {
    background_rounds (task) {
        task -> Text,
        finished_at -> Timestamp,
        replica -> Text,
    }
}

diesel::table! {
    incus_fingerprints (digest, arch, format) {
        digest -> Text,
        arch -> Text,
        format -> Integer,
        fingerprint -> Text,
        created_at -> Timestamp,
    }
}
