"""Gunicorn settings of `rapport web`; options given on its command line or in GUNICORN_CMD_ARGS take precedence."""

import os

# Behind a reverse proxy on the same machine by default; containers set RAPPORT_BIND=0.0.0.0:8000.
bind = os.environ.get("RAPPORT_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads: admin pages wait on the database and Redis, not the CPU, and a slow upload must not block a process.
worker_class = "gthread"
threads = int(os.environ.get("RAPPORT_WEB_THREADS", "4"))
# A 512 MB CSV upload over a slow line and a large export outlast gunicorn's default 30 s.
timeout = int(os.environ.get("RAPPORT_WEB_TIMEOUT", "300"))
graceful_timeout = 30
keepalive = 5
# Recycle processes now and then, so a slow leak in a dependency cannot grow without bound.
max_requests = 2000
max_requests_jitter = 200
accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
# X-Forwarded-* are applied by the app itself for TRUSTED_PROXIES hops (werkzeug ProxyFix), not by gunicorn.
forwarded_allow_ips = ""
