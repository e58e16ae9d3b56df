#include "server/loadgen/workload.h"

#include <cmath>
#include <random>
#include <string_view>

#include "common/strings.h"

namespace tokenfab::loadgen {
namespace {

// Plain ASCII prose (so a cut between tokens never splits a character),
// written for this tool. Long prompts wrap around it.
constexpr std::string_view kCorpus =
    "The old lighthouse stood at the end of a narrow spit of land, where the river met the sea "
    "and the tide came in twice a day over the flat grey sand. Its keeper had kept the lamp "
    "burning for thirty years, climbing the spiral stair each evening with a can of oil and a "
    "cloth for the glass. Ships passed in the night without knowing his name, and that suited "
    "him well. In the mornings he walked along the shore and counted the birds: gulls and "
    "terns, a heron that stood on one leg in the shallows, and now and then a flock of small "
    "brown waders that ran ahead of the waves as if they were afraid of getting their feet wet. "
    "He wrote the numbers in a book with a green cover, one line for every day, and at the end "
    "of each year he sent a copy to a society in the city that studied such things. Nobody "
    "ever wrote back, but he did not mind. Winter was the hardest season. Storms came from the "
    "west and threw spray against the windows of the tower, and the wind found every gap in the "
    "old stone walls. On those nights he sat by the stove with a cup of tea and listened to the "
    "radio, which spoke of markets and elections and football matches in places he had never "
    "seen. Spring brought the fishing boats back, and with them the young men from the village "
    "who liked to tell him stories about the big fish that got away. Summer was short and "
    "bright. Children came to look at the tower, and he let them climb to the gallery and look "
    "through the telescope at the ships on the horizon. Some of them asked how the lamp worked, "
    "and he explained the lenses, the clockwork that turned them, and the code of flashes that "
    "told a sailor which light he was looking at. A mathematician once visited and measured the "
    "height of the tower with a stick and its shadow, and then worked out how far the light "
    "could be seen on a clear night, taking into account the curve of the earth. The answer "
    "was a little under twenty miles, which matched what the keeper had always believed. In "
    "autumn the farmers brought apples to the market in the square, and the bakery sold bread "
    "with seeds and honey. The keeper bought a loaf every Saturday and a jar of plum jam when "
    "the plums were ripe. He repaired the roof of his cottage with slates from a ruined barn, "
    "painted the door blue, and planted onions, beans and potatoes in a garden sheltered by a "
    "wall of rough stones. When the engineers finally came to install an automatic light, they "
    "found everything in perfect order, and they asked him to stay on as a guide for the "
    "visitors, which he did for another ten years. ";

constexpr int32_t kMinPromptTokens = 8;
constexpr int kCutSearchSteps = 32;

int32_t CountTokens(const Tokenizer& tok, std::string_view text) {
  return static_cast<int32_t>(tok.Encode(text, tok.add_bos_default()).size());
}

// Text of `tag` followed by corpus text from `offset`, at least `min_tokens`
// tokens long (wrapping around the corpus as often as needed).
std::string LongText(const Tokenizer& tok, std::string_view tag, size_t offset,
                     int32_t min_tokens) {
  std::string text(tag);
  // The corpus runs at about 4.5 characters per token; check and extend.
  size_t pos = offset % kCorpus.size();
  // Start on a word boundary so prompts read as prose.
  while (pos != 0 && kCorpus[pos - 1] != ' ') pos = (pos + 1) % kCorpus.size();
  for (;;) {
    const size_t want = static_cast<size_t>(min_tokens) * 6 + 64;
    while (text.size() < want) {
      const size_t take = std::min(kCorpus.size() - pos, want - text.size());
      text.append(kCorpus.substr(pos, take));
      pos = (pos + take) % kCorpus.size();
    }
    if (CountTokens(tok, text) >= min_tokens + 4) return text;
    min_tokens *= 2;
  }
}

}  // namespace

absl::StatusOr<std::vector<std::string>> BuildPrompts(const Tokenizer& tokenizer, int32_t count,
                                                      int32_t tokens, uint64_t seed) {
  if (tokens < kMinPromptTokens) {
    return absl::InvalidArgumentError(
        StrCat("prompts must be at least ", kMinPromptTokens, " tokens long, got ", tokens));
  }
  if (count < 0) return absl::InvalidArgumentError("negative prompt count");
  std::mt19937_64 rng(seed);
  std::vector<std::string> prompts;
  prompts.reserve(count);
  for (int32_t i = 0; i < count; ++i) {
    const std::string tag = StrCat("Note ", i, ". ");
    const std::string text = LongText(tokenizer, tag, rng() % kCorpus.size(), tokens);
    const std::vector<int32_t> ids = tokenizer.Encode(text, /*add_bos=*/false);
    // Cut the token sequence, decode the cut and re-count: a cut inside what
    // would merge differently can re-encode to another length, so search
    // nearby cuts for one that comes back exactly `tokens` long.
    const int32_t bos = tokenizer.add_bos_default() && tokenizer.bos_id() >= 0 ? 1 : 0;
    const int32_t base = tokens - bos;
    bool found = false;
    // Cuts base, base-1, base+1, base-2, ...
    for (int step = 0; step < kCutSearchSteps && !found; ++step) {
      const int32_t cut = base + (step % 2 ? -(step + 1) / 2 : step / 2);
      if (cut <= 0 || cut > static_cast<int32_t>(ids.size())) continue;
      std::string candidate =
          tokenizer.Decode(std::span<const int32_t>(ids.data(), static_cast<size_t>(cut)));
      if (CountTokens(tokenizer, candidate) == tokens) {
        prompts.push_back(std::move(candidate));
        found = true;
      }
    }
    if (!found) {
      return absl::InternalError(
          StrCat("could not build a prompt of exactly ", tokens, " tokens (prompt ", i, ")"));
    }
  }
  return prompts;
}

std::vector<double> ArrivalTimes(int32_t count, double rate, uint64_t seed) {
  std::vector<double> times(count > 0 ? count : 0, 0.0);
  if (rate <= 0) return times;
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ULL);
  double t = 0;
  for (int32_t i = 1; i < count; ++i) {
    // Uniform in (0, 1] from 53 random bits; exponential gap by inversion
    // (std::exponential_distribution differs between standard libraries).
    const double u = (static_cast<double>(rng() >> 11) + 1.0) * 0x1.0p-53;
    t += -std::log(u) / rate;
    times[i] = t;
  }
  return times;
}

}  // namespace tokenfab::loadgen
