-- POST /v1/images/{image}/heartbeat: builders of pending images, each
-- request a random one (one locked write each).
dofile(os.getenv("SCHEDULER_SCRIPTS") .. "/common.lua")
local images = lines("pending_images")
request = function()
  return wrk.format("POST", "/v1/images/" .. images[math.random(#images)] .. "/heartbeat",
    with_token({ ["Content-Type"] = "application/json" }), '{"log_tail":"step 3/7"}')
end
