-- The ceiling: one row by primary key through actix-web + diesel + r2d2.
dofile(os.getenv("SCHEDULER_SCRIPTS") .. "/common.lua")
local ids = lines("project_ids")
request = function()
  return wrk.format("GET", "/bare/" .. ids[math.random(#ids)])
end
