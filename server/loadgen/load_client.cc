#include "server/loadgen/load_client.h"

#include <charconv>

#include "common/strings.h"
#include "server/loadgen/grpc_client.h"
#include "server/loadgen/http_client.h"

namespace tokenfab::loadgen {

absl::StatusOr<Target> ParseTarget(const std::string& url) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        StrCat("--target '", url, "': ", why, " (expected grpc://HOST:PORT or http://HOST:PORT)"));
  };
  Target t;
  std::string_view rest(url);
  if (rest.starts_with("grpc://")) {
    t.protocol = Protocol::kGrpc;
    rest.remove_prefix(7);
  } else if (rest.starts_with("http://")) {
    t.protocol = Protocol::kHttp;
    rest.remove_prefix(7);
  } else {
    return bad("unknown scheme");
  }
  if (rest.ends_with('/')) rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos) return bad("a path is not allowed");
  size_t colon;
  if (rest.starts_with('[')) {  // [IPv6]:port
    const size_t close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      return bad("bad IPv6 literal");
    }
    t.host = std::string(rest.substr(1, close - 1));
    colon = close + 1;
  } else {
    colon = rest.rfind(':');
    if (colon == std::string_view::npos) return bad("missing port");
    t.host = std::string(rest.substr(0, colon));
  }
  if (t.host.empty()) return bad("missing host");
  const std::string_view port = rest.substr(colon + 1);
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (ec != std::errc() || end != port.data() + port.size() || value == 0 || value > 65535) {
    return bad("bad port");
  }
  t.port = static_cast<uint16_t>(value);
  return t;
}

absl::StatusOr<std::unique_ptr<LoadClient>> CreateLoadClient(const Target& target,
                                                             const ClientOptions& options) {
  if (target.protocol == Protocol::kGrpc) {
    if (!options.extra_body_json.empty()) {
      return absl::InvalidArgumentError("extra request body fields apply to http:// targets only");
    }
    return NewGrpcLoadClient(target, options.api_key);
  }
  return NewHttpLoadClient(target, options);
}

}  // namespace tokenfab::loadgen
