"""An nginx site for the edge in front of the gateway: TLS, streaming, size and rate limits, admin networks."""

from __future__ import annotations

from ..errors import ConfigError
from .context import DeployContext

# Streams (chat completions, /admin/logs?follow) may stay silent for as long as the runner may.
_SITE = """{header}# Include inside nginx's http {{}} block (e.g. /etc/nginx/conf.d/homestack.conf).
limit_req_zone $binary_remote_addr zone=homestack_api:10m rate={rate};
limit_req_status 429;
limit_conn_status 429;

# A request id from the client is kept; otherwise nginx makes one. The gateway echoes it back.
map $http_x_request_id $homestack_request_id {{
    default $http_x_request_id;
    "" $request_id;
}}

upstream homestack_gateway {{
    server {upstream};
    keepalive 32;
}}

server {{
    listen {port} ssl http2;
    listen [::]:{port} ssl http2;
    server_name {server_name};

    ssl_certificate {certificate};
    ssl_certificate_key {certificate_key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:homestack_tls:10m;

    client_max_body_size {max_body};
    server_tokens off;
    add_header Strict-Transport-Security "max-age=31536000" always;
    add_header X-Content-Type-Options nosniff always;

    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_set_header X-Request-ID $homestack_request_id;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_buffering off;
    proxy_request_buffering off;
    proxy_cache off;
    proxy_connect_timeout {connect}s;
    proxy_read_timeout {read}s;
    proxy_send_timeout {read}s;

    location / {{
        limit_req zone=homestack_api burst={burst} nodelay;
        proxy_pass http://homestack_gateway;
    }}

    location = /health {{
        proxy_pass http://homestack_gateway;
    }}

    location ~ ^/(metrics|admin)(/|$) {{
{allow}
        deny all;
        proxy_pass http://homestack_gateway;
    }}
}}
"""


def render(ctx: DeployContext) -> dict[str, str]:
    d, fleet = ctx.deploy, ctx.fleet
    if fleet.port == 0:
        raise ConfigError(f"{ctx.source}: port: 0 lets the OS pick, but nginx needs the gateway's port; set one")
    host = "127.0.0.1" if fleet.host in ("0.0.0.0", "::") else fleet.host  # a wildcard is no address to call
    upstream = f"[{host}]:{fleet.port}" if ":" in host else f"{host}:{fleet.port}"
    return {"homestack.conf": _SITE.format(
        header=ctx.header("nginx"), rate=d.rate_limit, burst=d.rate_burst, upstream=upstream, port=d.https_port,
        server_name=d.server_name, certificate=d.tls_certificate, certificate_key=d.tls_certificate_key,
        max_body=fleet.max_body_bytes, connect=_seconds(fleet.timeouts.connect),
        read=_seconds(fleet.timeouts.read) + 10,  # the gateway answers 504 first, with a body saying why
        allow="\n".join(f"        allow {network};" for network in d.admin_networks),
    )}


def _seconds(value: float) -> int:
    return max(1, round(value))
