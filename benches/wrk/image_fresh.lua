-- image.lua with `Cache-Control: no-cache`: every read from the database.
dofile(os.getenv("SCHEDULER_SCRIPTS") .. "/image.lua")
wrk.headers["Cache-Control"] = "no-cache"
