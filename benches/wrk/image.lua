-- GET /v1/projects/{project}/plans/{plan}/image: the scheduler's read.
dofile(os.getenv("SCHEDULER_SCRIPTS") .. "/common.lua")
local projects = #lines("project_ids")
request = function()
  local path = "/v1/projects/p" .. math.random(0, projects - 1) .. "/plans/plan" .. math.random(0, 3) .. "/image"
  return wrk.format("GET", path)
end
