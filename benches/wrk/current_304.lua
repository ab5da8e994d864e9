-- GET …/current with the If-None-Match a scheduler that polls sends: 304.
dofile(os.getenv("SCHEDULER_SCRIPTS") .. "/common.lua")
local etags = lines("etags") -- "p<N> <etag>"
request = function()
  local slug, etag = etags[math.random(#etags)]:match("^(%S+) (.+)$")
  return wrk.format("GET", "/v1/projects/" .. slug .. "/current", with_token({ ["If-None-Match"] = etag }))
end
