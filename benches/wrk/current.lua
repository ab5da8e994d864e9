-- GET /v1/projects/{project}/current, projects picked at random.
dofile(os.getenv("SCHEDULER_SCRIPTS") .. "/common.lua")
local projects = #lines("project_ids")
request = function()
  return wrk.format("GET", "/v1/projects/p" .. math.random(0, projects - 1) .. "/current")
end
