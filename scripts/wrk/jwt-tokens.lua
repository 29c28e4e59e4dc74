-- wrk script for the jwt-auth benchmarks: sends the bearer tokens of the file named by the
-- environment variable JWT_TOKENS (one a line, tests/tools/bench_tokens.py writes them) in
-- turn, one per request, each connection starting at its own offset.
local tokens = {}
for line in io.lines(os.getenv("JWT_TOKENS") or "bench-results/jwt-tokens.txt") do
  if #line > 0 then tokens[#tokens + 1] = "Bearer " .. line end
end
local next_token = 1

function init(args)
  next_token = math.random(#tokens)
end

function request()
  local auth = tokens[next_token]
  next_token = next_token % #tokens + 1
  return wrk.format(nil, nil, { ["authorization"] = auth })
end
