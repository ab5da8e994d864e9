-- POST /v1/projects/{project}/snapshots {}: builds starting, each request a
-- pending snapshot with an image per plan in a random project (the project's
-- lock, a snapshot, four images, their events).
dofile(os.getenv("SCHEDULER_SCRIPTS") .. "/common.lua")
request = function()
  return wrk.format("POST", "/v1/projects/p" .. math.random(0, 39) .. "/snapshots",
    with_token({ ["Content-Type"] = "application/json" }), "{}")
end
