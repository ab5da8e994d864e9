-- Shared by the scheduler.sh scenarios: the bench token, and lines of a
-- file the load benchmark wrote (ids, ETags).
token = "bench-admin-token-0123456789abcdef"
dir = os.getenv("SCHEDULER_DIR")

function lines(name)
  local found = {}
  for line in io.lines(dir .. "/" .. name) do
    if line ~= "" then found[#found + 1] = line end
  end
  return found
end

wrk.headers["Authorization"] = "Bearer " .. token

-- wrk.format replaces wrk.headers with the table it is given: keep the token.
function with_token(headers)
  headers["Authorization"] = "Bearer " .. token
  return headers
end
