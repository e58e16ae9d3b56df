#include "server/auth.h"

#include <cstdlib>

#include "common/mapped_file.h"
#include "common/strings.h"
#include "grpcpp/support/client_interceptor.h"
#include "openssl/crypto.h"
#include "openssl/rand.h"

namespace tokenfab {
namespace {

constexpr size_t kMaxKeyBytes = 1024;
constexpr size_t kMaxKeyFileBytes = 1 << 20;

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// Adds the bearer key to every call's initial metadata.
class BearerInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit BearerInterceptor(std::string value) : value_(std::move(value)) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->emplace("authorization", value_);
    }
    methods->Proceed();
  }

 private:
  const std::string value_;
};

class BearerInterceptorFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerInterceptorFactory(const std::string& key) : value_(StrCat("Bearer ", key)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new BearerInterceptor(value_);  // gRPC owns it for the call
  }

 private:
  const std::string value_;
};

}  // namespace

absl::StatusOr<KeySet> KeySet::Parse(std::string_view text, std::string_view source) {
  if (text.size() > kMaxKeyFileBytes) {
    return absl::InvalidArgumentError(
        StrCat(source, ": larger than ", kMaxKeyFileBytes, " bytes; expected keys, one a line"));
  }
  KeySet set;
  int line_number = 0;
  while (!text.empty()) {
    const size_t end = text.find('\n');
    const std::string_view line = Trim(text.substr(0, end));
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    ++line_number;
    if (line.empty() || line.front() == '#') continue;
    auto bad = [&](std::string_view why) {
      return absl::InvalidArgumentError(StrCat(source, " line ", line_number, ": ", why));
    };
    if (line.size() > kMaxKeyBytes) return bad(StrCat("a key is at most ", kMaxKeyBytes, " bytes"));
    for (char c : line) {
      if (c < 0x21 || c > 0x7e) return bad("a key is visible ASCII, with no spaces inside");
    }
    set.keys_.emplace_back(line);
  }
  if (set.keys_.empty()) {
    return absl::InvalidArgumentError(StrCat(source, ": no key in it (one a line, '#' comments)"));
  }
  return set;
}

absl::StatusOr<KeySet> KeySet::Load(const std::string& file, std::string_view flag,
                                    const char* env) {
  if (!file.empty()) {
    absl::StatusOr<std::string> text = ReadFileToString(file);
    if (!text.ok())
      return absl::InvalidArgumentError(StrCat("--", flag, ": ", text.status().message()));
    return Parse(*text, StrCat("--", flag, " ", file));
  }
  if (const char* value = std::getenv(env); value != nullptr && *value != '\0') {
    return Parse(value, StrCat("$", env));
  }
  return KeySet();
}

KeySet KeySet::Random() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) std::abort();  // no entropy: nothing is safe
  static constexpr char kHex[] = "0123456789abcdef";
  std::string key;
  for (unsigned char b : bytes) {
    key.push_back(kHex[b >> 4]);
    key.push_back(kHex[b & 15]);
  }
  KeySet set;
  set.keys_.push_back(std::move(key));
  return set;
}

const std::string& KeySet::first() const {
  static const std::string kNone;
  return keys_.empty() ? kNone : keys_.front();
}

bool KeySet::Admits(std::string_view authorization) const {
  if (keys_.empty()) return true;
  authorization = Trim(authorization);
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    const char c = authorization[i];
    if ((c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c) != kScheme[i]) return false;
  }
  const std::string_view presented = Trim(authorization.substr(kScheme.size()));
  // Every key is compared, each in constant time for its length.
  bool admitted = false;
  for (const std::string& key : keys_) {
    admitted |= key.size() == presented.size() &&
                CRYPTO_memcmp(key.data(), presented.data(), key.size()) == 0;
  }
  return admitted;
}

grpc::Status Authorize(const KeySet& keys, std::string_view what,
                       const grpc::CallbackServerContext& context) {
  if (keys.open()) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  const auto found = metadata.find("authorization");
  if (found == metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        StrCat("missing ", what, ": send metadata 'authorization: Bearer <key>'"));
  }
  if (!keys.Admits(std::string_view(found->second.data(), found->second.size()))) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, StrCat("invalid ", what));
  }
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* RefuseUnary(const KeySet& keys, std::string_view what,
                                      grpc::CallbackServerContext* context) {
  grpc::Status status = Authorize(keys, what, *context);
  if (status.ok()) return nullptr;
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

std::shared_ptr<grpc::Channel> KeyedChannel(const std::string& target, const std::string& key,
                                            const grpc::ChannelArguments& args) {
  if (key.empty())
    return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<BearerInterceptorFactory>(key));
  return grpc::experimental::CreateCustomChannelWithInterceptors(
      target, grpc::InsecureChannelCredentials(), args, std::move(interceptors));
}

}  // namespace tokenfab
