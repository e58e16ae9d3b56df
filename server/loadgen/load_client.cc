#include "server/loadgen/load_client.h"

#include <charconv>

#include "common/status_macros.h"
#include "common/strings.h"
#include "server/loadgen/grpc_client.h"
#include "server/loadgen/http_client.h"
#include "server/tls.h"

namespace tokenfab::loadgen {

absl::StatusOr<Target> ParseTarget(const std::string& url) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        StrCat("--target '", url, "': ", why,
               " (expected grpc://HOST:PORT or http://HOST:PORT, grpcs:// or https:// for TLS)"));
  };
  Target t;
  std::string_view rest(url);
  const size_t scheme_end = rest.find("://");
  if (scheme_end == std::string_view::npos) return bad("unknown scheme");
  const std::string_view scheme = rest.substr(0, scheme_end);
  if (scheme == "grpc" || scheme == "grpcs") {
    t.protocol = Protocol::kGrpc;
  } else if (scheme == "http" || scheme == "https") {
    t.protocol = Protocol::kHttp;
  } else {
    return bad("unknown scheme");
  }
  t.tls = scheme.ends_with('s');
  rest.remove_prefix(scheme_end + 3);
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
  if (!options.tls_ca_file.empty() && !target.tls) {
    return absl::InvalidArgumentError("--tls-ca-file needs a grpcs:// or https:// target");
  }
  if (target.protocol == Protocol::kGrpc) {
    if (!options.extra_body_json.empty()) {
      return absl::InvalidArgumentError("extra request body fields apply to http:// targets only");
    }
    ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                     ClientChannelCredentials(target.tls, options.tls_ca_file));
    return NewGrpcLoadClient(target, options.api_key, std::move(credentials));
  }
  std::shared_ptr<boost::asio::ssl::context> tls;
  if (target.tls) {
    ASSIGN_OR_RETURN(tls, ClientSslContext(options.tls_ca_file));
  }
  return NewHttpLoadClient(target, options, std::move(tls));
}

}  // namespace tokenfab::loadgen
