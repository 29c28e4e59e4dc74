-- wrk request script for the rate-limit benches: each request carries one of 10,000
-- `x-client` values, at random, so the filters keep 10,000 buckets busy.
-- Used with envoy-config/bench/rate-limit.yaml and local-ratelimit.yaml.
math.randomseed(42)
request = function()
  wrk.headers["x-client"] = "client-" .. math.random(10000)
  return wrk.format(nil, nil, nil, nil)
end
