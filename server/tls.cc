#include "server/tls.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/mapped_file.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "openssl/bio.h"
#include "openssl/pem.h"
#include "openssl/ssl.h"
#include "openssl/x509.h"

namespace tokenfab {
namespace {

namespace ssl = boost::asio::ssl;

// A certificate chain or a key is a few KiB; a bigger file is a mistake.
constexpr uintmax_t kMaxPemBytes = 1 << 20;
// How often gRPC's watcher re-reads the files (the reloader's poll too).
constexpr unsigned kGrpcRefreshSeconds = 2;

struct Pair {
  std::string cert_pem, key_pem;
};

absl::Status WritePrivateFile(const std::filesystem::path& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(StrCat(path.string(), ": ", std::strerror(errno)));
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      return absl::InternalError(StrCat(path.string(), ": ", std::strerror(err)));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return absl::OkStatus();
}

// Where gRPC's watcher reads the pair in force (see tls.h): `dir`/current
// is a symlink to gen-N, which holds tls.crt and tls.key.
class PublishedPair {
 public:
  static absl::StatusOr<std::unique_ptr<PublishedPair>> Create() {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ =
        StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/tokenfab-tls-XXXXXX");
    if (::mkdtemp(templ.data()) == nullptr) {
      return absl::InternalError(StrCat("cannot make a private directory for gRPC's TLS files (",
                                        templ, "): ", std::strerror(errno)));
    }
    return std::unique_ptr<PublishedPair>(new PublishedPair(templ));
  }
  ~PublishedPair() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::string cert_path() const { return (dir_ / "current" / "tls.crt").string(); }
  std::string key_path() const { return (dir_ / "current" / "tls.key").string(); }

  // Writes a new generation and points `current` at it in one rename; the
  // generation before the last is removed (a watcher may still read the last).
  absl::Status Publish(const Pair& pair) {
    namespace fs = std::filesystem;
    const std::string name = StrCat("gen-", ++generation_);
    std::error_code ec;
    fs::create_directory(dir_ / name, ec);
    if (ec) return absl::InternalError(StrCat((dir_ / name).string(), ": ", ec.message()));
    RETURN_IF_ERROR(WritePrivateFile(dir_ / name / "tls.crt", pair.cert_pem));
    RETURN_IF_ERROR(WritePrivateFile(dir_ / name / "tls.key", pair.key_pem));
    fs::remove(dir_ / "current.new", ec);
    fs::create_directory_symlink(name, dir_ / "current.new", ec);
    if (!ec) fs::rename(dir_ / "current.new", dir_ / "current", ec);
    if (ec) return absl::InternalError(StrCat((dir_ / "current").string(), ": ", ec.message()));
    if (generation_ > 2) fs::remove_all(dir_ / StrCat("gen-", generation_ - 2), ec);
    return absl::OkStatus();
  }

 private:
  explicit PublishedPair(std::filesystem::path dir) : dir_(std::move(dir)) {}
  const std::filesystem::path dir_;
  int64_t generation_ = 0;
};

absl::StatusOr<Pair> ReadPair(const std::string& cert_file, const std::string& key_file) {
  Pair p;
  absl::StatusOr<std::string> cert = ReadFileToString(cert_file, kMaxPemBytes);
  if (!cert.ok())
    return absl::InvalidArgumentError(StrCat("--tls-cert-file: ", cert.status().message()));
  absl::StatusOr<std::string> key = ReadFileToString(key_file, kMaxPemBytes);
  if (!key.ok())
    return absl::InvalidArgumentError(StrCat("--tls-key-file: ", key.status().message()));
  p.cert_pem = *std::move(cert);
  p.key_pem = *std::move(key);
  return p;
}

// A server context presenting `pair`: TLS 1.2 and 1.3 only.
absl::StatusOr<std::shared_ptr<ssl::context>> MakeContext(const Pair& pair,
                                                          const std::string& cert_file,
                                                          const std::string& key_file) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                   ssl::context::single_dh_use);
  boost::system::error_code ec;
  // The key first: OpenSSL then drops it if the certificate does not match,
  // and the check below names both files.
  ctx->use_private_key(boost::asio::buffer(pair.key_pem), ssl::context::pem, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        StrCat("--tls-key-file ", key_file, ": no PEM private key (", ec.message(), ")"));
  }
  ctx->use_certificate_chain(boost::asio::buffer(pair.cert_pem), ec);
  if (ec) {
    return absl::InvalidArgumentError(
        StrCat("--tls-cert-file ", cert_file, ": no PEM certificate chain (", ec.message(), ")"));
  }
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    return absl::InvalidArgumentError(StrCat("--tls-key-file ", key_file,
                                             " is not the key of the certificate in "
                                             "--tls-cert-file ",
                                             cert_file));
  }
  return ctx;
}

std::string DescribeCertificate(ssl::context& ctx) {
  X509* cert = SSL_CTX_get0_certificate(ctx.native_handle());
  if (cert == nullptr) return "no certificate";
  char subject[512];
  X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof subject);
  std::string until = "?";
  if (BIO* bio = BIO_new(BIO_s_mem()); bio != nullptr) {
    if (ASN1_TIME_print(bio, X509_get0_notAfter(cert)) == 1) {
      char* data = nullptr;
      const long n = BIO_get_mem_data(bio, &data);
      if (n > 0) until.assign(data, static_cast<size_t>(n));
    }
    BIO_free(bio);
  }
  return StrCat("subject ", subject, ", valid until ", until);
}

}  // namespace

struct TlsIdentity::State {
  std::string cert_file, key_file;
  absl::Mutex reload_mu;  // one Reload at a time; taken before mu
  ReloadedFile seen ABSL_GUARDED_BY(reload_mu);
  std::unique_ptr<PublishedPair> published;  // written under reload_mu
  mutable absl::Mutex mu;
  std::shared_ptr<ssl::context> context ABSL_GUARDED_BY(mu);
};

absl::StatusOr<TlsIdentity> TlsIdentity::Load(const std::string& cert_file,
                                              const std::string& key_file) {
  if (cert_file.empty() != key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert-file and --tls-key-file go together");
  }
  if (cert_file.empty()) return TlsIdentity();
  absl::StatusOr<Pair> pair = ReadPair(cert_file, key_file);
  if (!pair.ok()) return pair.status();
  absl::StatusOr<std::shared_ptr<ssl::context>> ctx = MakeContext(*pair, cert_file, key_file);
  if (!ctx.ok()) return ctx.status();
  TlsIdentity id;
  id.state_ = std::make_shared<State>();
  id.state_->cert_file = cert_file;
  id.state_->key_file = key_file;
  {
    absl::MutexLock lock(&id.state_->reload_mu);
    ASSIGN_OR_RETURN(id.state_->published, PublishedPair::Create());
    RETURN_IF_ERROR(id.state_->published->Publish(*pair));
    id.state_->seen = ReloadedFile(StrCat(pair->cert_pem, std::string(1, '\0'), pair->key_pem));
  }
  absl::MutexLock lock(&id.state_->mu);
  id.state_->context = *std::move(ctx);
  return id;
}

std::shared_ptr<ssl::context> TlsIdentity::context() const {
  if (!enabled()) return nullptr;
  absl::MutexLock lock(&state_->mu);
  return state_->context;
}

std::shared_ptr<grpc::ServerCredentials> TlsIdentity::GrpcCredentials() const {
  if (!enabled()) return grpc::InsecureServerCredentials();
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      state_->published->key_path(), state_->published->cert_path(), kGrpcRefreshSeconds);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  return grpc::experimental::TlsServerCredentials(options);
}

absl::StatusOr<bool> TlsIdentity::Reload(ReloadWhen when) const {
  if (!enabled()) return false;
  State& s = *state_;
  absl::MutexLock reloading(&s.reload_mu);
  absl::StatusOr<Pair> pair = ReadPair(s.cert_file, s.key_file);
  const std::string seen = pair.ok() ? StrCat(pair->cert_pem, std::string(1, '\0'), pair->key_pem)
                                     : StrCat("\n", pair.status().message());
  switch (s.seen.LookAt(seen, when)) {
    case ReloadedFile::Look::kTaken:
    case ReloadedFile::Look::kRefused:
    case ReloadedFile::Look::kWait:
      return false;
    case ReloadedFile::Look::kTry:
      break;
  }
  absl::StatusOr<std::shared_ptr<ssl::context>> ctx =
      pair.ok() ? MakeContext(*pair, s.cert_file, s.key_file) : pair.status();
  if (ctx.ok()) {
    if (absl::Status published = s.published->Publish(*pair); !published.ok()) {
      ctx = absl::Status(published.code(),
                         StrCat("cannot hand the pair to gRPC: ", published.message()));
    }
  }
  if (!ctx.ok()) {
    s.seen.Refused(seen);
    return ctx.status();
  }
  s.seen.Took(seen);
  absl::MutexLock lock(&s.mu);
  s.context = *std::move(ctx);
  return true;
}

std::string TlsIdentity::source() const {
  return enabled() ? StrCat("--tls-cert-file ", state_->cert_file) : "";
}

std::string TlsIdentity::Describe() const {
  std::shared_ptr<ssl::context> ctx = context();
  return ctx == nullptr ? "plain TCP" : DescribeCertificate(*ctx);
}

absl::StatusOr<std::shared_ptr<ssl::context>> ClientSslContext(const std::string& ca_file) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  ctx->set_verify_mode(ssl::verify_peer);
  boost::system::error_code ec;
  if (ca_file.empty()) {
    ctx->set_default_verify_paths(ec);
    if (ec) return absl::UnavailableError(StrCat("the system's CA certificates: ", ec.message()));
    return ctx;
  }
  absl::StatusOr<std::string> roots = ReadFileToString(ca_file, kMaxPemBytes);
  if (!roots.ok())
    return absl::InvalidArgumentError(StrCat("--tls-ca-file: ", roots.status().message()));
  ctx->add_certificate_authority(boost::asio::buffer(*roots), ec);
  if (ec) {
    return absl::InvalidArgumentError(
        StrCat("--tls-ca-file ", ca_file, ": no PEM certificate (", ec.message(), ")"));
  }
  return ctx;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ClientChannelCredentials(
    bool tls, const std::string& ca_file) {
  if (!tls) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions options;
  if (!ca_file.empty()) {
    absl::StatusOr<std::string> roots = ReadFileToString(ca_file, kMaxPemBytes);
    if (!roots.ok())
      return absl::InvalidArgumentError(StrCat("--tls-ca-file: ", roots.status().message()));
    options.pem_root_certs = *std::move(roots);
  }
  return grpc::SslCredentials(options);
}

}  // namespace tokenfab
