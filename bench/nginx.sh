#!/usr/bin/env bash
# The full rma path (router → coordinator → worker) against nginx doing the same shape of work:
# two reverse-proxy hops in front of an echo (Debian's nginx-light and libnginx-mod-http-echo),
# 1 KB bodies, measured by the same client in the same run.
# Usage: bench/nginx.sh [--seconds 5] [--levels 1,32]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nginx >/dev/null || [ ! -e /usr/lib/nginx/modules/ngx_http_echo_module.so ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get install -y -qq nginx-light libnginx-mod-http-echo >/dev/null
fi
dir=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
p1=$(port); p2=$(port); p3=$(port)
cat > "$dir/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;
worker_processes auto;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  client_body_buffer_size 64k;
  upstream hop2 { server 127.0.0.1:$p2; keepalive 256; }
  upstream echo { server 127.0.0.1:$p3; keepalive 256; }
  # First hop: the "router".
  server { listen 127.0.0.1:$p1; location / {
    proxy_pass http://hop2; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  # Second hop: the "coordinator".
  server { listen 127.0.0.1:$p2; location / {
    proxy_pass http://echo; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  # The "worker": echo the body back.
  server { listen 127.0.0.1:$p3; location / {
    echo_read_request_body; echo_request_body; } }
}
CONF
nginx -c "$dir/nginx.conf" -p "$dir" &
ngx=$!
trap 'kill $ngx 2>/dev/null || true; wait $ngx 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 50); do
  curl -sf -o /dev/null --data x "http://127.0.0.1:$p1/api/service/echo" && break
  sleep 0.1
done
cargo bench -p rma-testkit --bench echo -- --levels 1,32 --workers 1 \
  --compare "nginx → nginx → nginx echo=http://127.0.0.1:$p1/" "$@"
