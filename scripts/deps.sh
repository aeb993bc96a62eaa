# Sourced by scripts/up and scripts/test: installs what rma needs from Debian's packages when
# it is missing. Nothing else is downloaded by hand.

# Debian packages needed to build and run rma. The Rust toolchain itself comes with the machine.
# tesseract + leptonica (headers for the leptess bindings, clang for bindgen), the English
# language data, poppler-utils (pdfinfo, pdftotext, pdftoppm) and the fonts the tests and the corpus
# render letters with (DejaVu, Liberation, FreeFont).
RMA_APT_PACKAGES=(
  pkg-config clang libclang-dev
  libtesseract-dev libleptonica-dev tesseract-ocr tesseract-ocr-eng
  poppler-utils fonts-dejavu-core
  fonts-liberation fonts-freefont-ttf
)

ensure_apt() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  echo "==> installing Debian packages: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

ensure_toolchain() {
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 || {
    echo "error: cargo is not on PATH; install Rust (https://rustup.rs) first" >&2
    exit 1
  }
}

# Only the tests need a browser: Debian's Chromium, driven by playwright-core.
RMA_TEST_APT_PACKAGES=(chromium)

ensure_node() {
  command -v npm >/dev/null 2>&1 || ensure_apt nodejs npm
}

ensure_deps() {
  ensure_toolchain
  ensure_apt "${RMA_APT_PACKAGES[@]}"
  ensure_node
}

# Builds the web UI into web/dist, which the router embeds; run before cargo builds rma.
build_ui() {
  echo "==> building the web UI" >&2
  (cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
}

# Installs the edge router's packages (wrangler with its workerd binary, from the npm registry)
# and type-checks it. Needs no Cloudflare account: the tests run it in local workerd.
build_edge() {
  echo "==> installing and type-checking the edge router (edge/)" >&2
  (cd edge && npm ci --no-audit --no-fund --loglevel=error && npx tsc -p .)
}
