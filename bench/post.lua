-- wrk script for the 1 MiB POST echo scenario of bench/run.py: every request POSTs the same
-- 1 MiB body to /echo (wrk adds Content-Length), and the server sends it back.
wrk.method = "POST"
wrk.body = string.rep("e", 1024 * 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
