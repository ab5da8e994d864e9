-- current.lua with `Cache-Control: no-cache`: every read from the database.
dofile(os.getenv("SCHEDULER_SCRIPTS") .. "/current.lua")
wrk.headers["Cache-Control"] = "no-cache"
