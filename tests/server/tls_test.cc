// TlsIdentity (server/tls.h) on certificates made here with OpenSSL: a good
// pair loads, every bad one is refused with a reason naming its file, and a
// reload takes a renewed pair (at once, or once two polls agree) while a
// broken one is refused once and leaves the pair in force. The directory
// that hands pairs to gRPC holds only pairs that passed, and goes with the
// last handle.
#include "server/tls.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "openssl/evp.h"
#include "openssl/pem.h"
#include "openssl/x509.h"

namespace tokenfab {
namespace {

struct Pem {
  std::string cert, key;
};

std::string ToPem(auto write) {
  BIO* bio = BIO_new(BIO_s_mem());
  write(bio);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

// A self-signed P-256 certificate for CN=`cn`, valid for a day.
Pem MakePair(const std::string& cn) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* x = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509_sign(x, key, EVP_sha256());
  Pem p;
  p.cert = ToPem([&](BIO* b) { PEM_write_bio_X509(b, x); });
  p.key = ToPem(
      [&](BIO* b) { PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr); });
  X509_free(x);
  EVP_PKEY_free(key);
  return p;
}

class TlsIdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ / "tmp");
    setenv("TMPDIR", (dir_ / "tmp").c_str(), 1);
  }
  void TearDown() override { unsetenv("TMPDIR"); }

  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::trunc) << text;
  }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  // Writes `p` as tls.crt and tls.key and loads them.
  absl::StatusOr<TlsIdentity> WriteAndLoad(const Pem& p) {
    Write("tls.crt", p.cert);
    Write("tls.key", p.key);
    return TlsIdentity::Load(Path("tls.crt"), Path("tls.key"));
  }
  // The directories gRPC's pairs are published in.
  int PublishedDirs() const {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir_ / "tmp")) n += e.is_directory();
    return n;
  }

  std::filesystem::path dir_;
};

TEST_F(TlsIdentityTest, NoFilesIsPlainAndOneFileAloneIsRefused) {
  absl::StatusOr<TlsIdentity> none = TlsIdentity::Load("", "");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->enabled());
  EXPECT_EQ(none->context(), nullptr);
  EXPECT_FALSE(*none->Reload());
  Write("a.crt", MakePair("a").cert);
  absl::StatusOr<TlsIdentity> half = TlsIdentity::Load(Path("a.crt"), "");
  EXPECT_EQ(half.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(half.status().message().find("go together"), std::string::npos) << half.status();
}

TEST_F(TlsIdentityTest, BadPairsAreRefusedNamingTheFile) {
  const Pem a = MakePair("a"), b = MakePair("b");
  Write("a.crt", a.cert);
  Write("a.key", a.key);
  Write("b.key", b.key);
  Write("junk", "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n");
  struct Case {
    std::string cert, key, says;
  };
  for (const Case& c :
       {Case{"a.crt", "b.key", "is not the key of the certificate"},
        Case{"junk", "a.key", "no PEM certificate chain"},
        Case{"a.crt", "junk", "no PEM private key"}, Case{"a.crt", "gone.key", "--tls-key-file"},
        Case{"a.key", "a.key", "no PEM certificate chain"}}) {
    absl::StatusOr<TlsIdentity> id = TlsIdentity::Load(Path(c.cert), Path(c.key));
    EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument) << c.cert << " " << c.key;
    EXPECT_NE(id.status().message().find(c.says), std::string::npos) << id.status();
  }
  EXPECT_EQ(PublishedDirs(), 0) << "a refused pair leaves nothing behind";
}

TEST_F(TlsIdentityTest, ARenewalIsTakenAndABrokenOneRefusedOnce) {
  const Pem a = MakePair("server-a"), b = MakePair("server-b");
  absl::StatusOr<TlsIdentity> id = WriteAndLoad(a);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->source(), "--tls-cert-file " + Path("tls.crt"));
  EXPECT_NE(id->Describe().find("CN=server-a"), std::string::npos) << id->Describe();
  const auto first = id->context();
  EXPECT_EQ(PublishedDirs(), 1);

  // Unchanged: nothing to take.
  EXPECT_FALSE(*id->Reload(ReloadWhen::kSettled));
  // Renewed, seen by a poll: taken on the second read that agrees.
  Write("tls.key", b.key);
  Write("tls.crt", b.cert);
  EXPECT_FALSE(*id->Reload(ReloadWhen::kSettled));
  EXPECT_EQ(id->context(), first);
  absl::StatusOr<bool> taken = id->Reload(ReloadWhen::kSettled);
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_TRUE(*taken);
  EXPECT_NE(id->context(), first) << "new connections get the renewed pair";
  TlsIdentity copy = *id;
  EXPECT_NE(copy.Describe().find("CN=server-b"), std::string::npos) << "copies share one pair";

  // Broken at once (SIGHUP): refused, reported once, the pair in force stays.
  const auto second = id->context();
  Write("tls.key", a.key);
  absl::StatusOr<bool> broken = id->Reload(ReloadWhen::kNow);
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(*id->Reload(ReloadWhen::kNow)) << "the same bad pair is not reported again";
  EXPECT_EQ(id->context(), second);
  // Mended: back to what is in force, nothing to take.
  Write("tls.key", b.key);
  EXPECT_FALSE(*id->Reload(ReloadWhen::kNow));
  EXPECT_EQ(id->context(), second);
}

TEST_F(TlsIdentityTest, GrpcReadsOnlyPairsThatPassedAndTheirDirectoryGoesWithTheLastHandle) {
  const Pem a = MakePair("a"), b = MakePair("b");
  {
    absl::StatusOr<TlsIdentity> id = WriteAndLoad(a);
    ASSERT_TRUE(id.ok()) << id.status();
    ASSERT_NE(id->GrpcCredentials(), nullptr);
    std::filesystem::path published;
    for (const auto& e : std::filesystem::directory_iterator(dir_ / "tmp")) published = e.path();
    auto read = [](const std::filesystem::path& p) {
      std::ifstream in(p);
      return std::string(std::istreambuf_iterator<char>(in), {});
    };
    EXPECT_EQ(read(published / "current" / "tls.crt"), a.cert);
    EXPECT_EQ(std::filesystem::status(published).permissions() & std::filesystem::perms::all,
              std::filesystem::perms::owner_all);
    Write("tls.crt", "garbage");
    EXPECT_FALSE(id->Reload(ReloadWhen::kNow).ok());
    EXPECT_EQ(read(published / "current" / "tls.crt"), a.cert) << "a refused pair is not published";
    for (int i = 0; i < 3; ++i) {  // renewals keep two generations at most
      const Pem next = i % 2 == 0 ? b : a;
      Write("tls.key", next.key);
      Write("tls.crt", next.cert);
      ASSERT_TRUE(*id->Reload(ReloadWhen::kNow));
      EXPECT_EQ(read(published / "current" / "tls.key"), next.key);
    }
    int generations = 0;
    for (const auto& e : std::filesystem::directory_iterator(published))
      generations += e.path().filename().string().starts_with("gen-");
    EXPECT_EQ(generations, 2);
  }
  EXPECT_EQ(PublishedDirs(), 0);
}

}  // namespace
}  // namespace tokenfab
