-- PATCH /v1/images/{image} {"status":"active"}: builders finishing, each
-- request a different pending image (an image status change: the
-- snapshot's aggregate, events, maybe a pointer move). wrk's two threads
-- take alternate images, so no image is changed twice.
dofile(os.getenv("SCHEDULER_SCRIPTS") .. "/common.lua")
local threads = 0
function setup(thread)
  thread:set("first", threads + 1)
  threads = threads + 1
end
local images, next_image
function init(args)
  images = lines("pending_images")
  next_image = first
end
request = function()
  local image = images[next_image]
  next_image = next_image + 2
  return wrk.format("PATCH", "/v1/images/" .. image,
    with_token({ ["Content-Type"] = "application/json" }), '{"status":"active"}')
end
