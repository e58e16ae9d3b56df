#include "worker/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace tokenfab {
namespace {

// Higher logit first; equal logits by lower id.
bool Before(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

int32_t ArgMax(std::span<const float> v) {
  int32_t best = 0;
  for (int32_t i = 1; i < static_cast<int32_t>(v.size()); ++i) {
    if (v[i] > v[best]) best = i;
  }
  return best;
}

// A uniform double in [0, 1) from 53 random bits; the same on every platform
// (std::uniform_real_distribution is not specified bit for bit).
double Uniform(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

double LogSumExp(std::span<const float> logits) {
  const float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - max);
  return max + std::log(sum);
}

}  // namespace

Sampler::Sampler(const SamplingOptions& options, std::span<const int32_t> prompt_tokens)
    : options_(options), rng_(options.seed) {
  if (options_.repetition_penalty != 0 && options_.repetition_penalty != 1) {
    seen_.insert(prompt_tokens.begin(), prompt_tokens.end());
  }
}

void Sampler::Accept(int32_t token) {
  ++out_counts_[token];
  if (options_.repetition_penalty != 0 && options_.repetition_penalty != 1) seen_.insert(token);
}

int32_t Sampler::Sample(std::span<const float> logits) {
  const int32_t vocab = static_cast<int32_t>(logits.size());
  work_.assign(logits.begin(), logits.end());
  // A NaN logit (from broken weights) must not poison the sort order or the
  // distribution: it becomes impossible instead.
  for (float& l : work_) {
    if (std::isnan(l)) l = -std::numeric_limits<float>::infinity();
  }

  const float rep = options_.repetition_penalty;
  if (rep != 0 && rep != 1) {
    for (int32_t t : seen_) {
      if (t < 0 || t >= vocab) continue;
      work_[t] = work_[t] > 0 ? work_[t] / rep : work_[t] * rep;
    }
  }
  if (options_.presence_penalty != 0 || options_.frequency_penalty != 0) {
    for (const auto& [t, count] : out_counts_) {
      if (t < 0 || t >= vocab) continue;
      work_[t] -= options_.frequency_penalty * static_cast<float>(count) + options_.presence_penalty;
    }
  }

  int32_t chosen;
  // Below this temperature the distribution is a point mass in all but
  // rounding, and 1/temperature would overflow (as vLLM treats it).
  constexpr float kGreedyTemperature = 1e-5f;
  if (options_.temperature < kGreedyTemperature) {
    chosen = ArgMax(work_);
  } else {
    const float inv_t = 1.0f / options_.temperature;
    candidates_.clear();
    candidates_.reserve(vocab);
    for (int32_t i = 0; i < vocab; ++i) candidates_.emplace_back(work_[i] * inv_t, i);
    const bool use_top_p = options_.top_p > 0 && options_.top_p < 1;
    // Sorting is needed only for top-k and top-p; otherwise candidates stay
    // in id order, which is just as deterministic.
    if (options_.top_k > 0 && static_cast<size_t>(options_.top_k) < candidates_.size()) {
      std::partial_sort(candidates_.begin(), candidates_.begin() + options_.top_k,
                        candidates_.end(), Before);
      candidates_.resize(options_.top_k);
    } else if (use_top_p) {
      std::sort(candidates_.begin(), candidates_.end(), Before);
    }
    float max_logit = -std::numeric_limits<float>::infinity();
    for (const auto& c : candidates_) max_logit = std::max(max_logit, c.first);
    if (!std::isfinite(max_logit)) max_logit = 0;  // all -inf: probabilities all 0
    // Probabilities relative to the most likely candidate (which has 1).
    probs_.resize(candidates_.size());
    for (size_t i = 0; i < candidates_.size(); ++i) {
      probs_[i] = std::exp(static_cast<double>(candidates_[i].first) - max_logit);
    }
    if (use_top_p) {
      double total = 0;
      for (double p : probs_) total += p;
      double cum = 0;
      size_t cut = probs_.size();
      for (size_t i = 0; i < probs_.size(); ++i) {
        cum += probs_[i] / total;
        if (cum >= options_.top_p) {
          cut = i + 1;
          break;
        }
      }
      probs_.resize(cut);
      candidates_.resize(cut);
    }
    if (options_.min_p > 0) {
      size_t kept = 0;
      for (size_t i = 0; i < probs_.size(); ++i) {
        if (probs_[i] >= options_.min_p) {
          probs_[kept] = probs_[i];
          candidates_[kept] = candidates_[i];
          ++kept;
        }
      }
      probs_.resize(kept);
      candidates_.resize(kept);
    }
    double total = 0;
    for (double p : probs_) total += p;
    if (probs_.empty() || !(total > 0) || !std::isfinite(total)) {
      // Nothing left to draw from (every logit -inf): fall back to argmax.
      chosen = ArgMax(work_);
    } else {
      const double u = Uniform(rng_) * total;
      double cum = 0;
      chosen = candidates_.back().second;
      for (size_t i = 0; i < probs_.size(); ++i) {
        cum += probs_[i];
        if (u < cum) {
          chosen = candidates_[i].second;
          break;
        }
      }
    }
  }
  Accept(chosen);
  return chosen;
}

std::vector<TokenLogprobValue> TopLogprobs(std::span<const float> logits, int32_t n) {
  const double lse = LogSumExp(logits);
  std::vector<std::pair<float, int32_t>> all;
  all.reserve(logits.size());
  for (int32_t i = 0; i < static_cast<int32_t>(logits.size()); ++i) all.emplace_back(logits[i], i);
  const size_t k = std::min<size_t>(std::max(0, n), all.size());
  std::partial_sort(all.begin(), all.begin() + k, all.end(), Before);
  std::vector<TokenLogprobValue> out;
  for (size_t i = 0; i < k; ++i) {
    out.push_back({all[i].second, static_cast<float>(all[i].first - lse)});
  }
  return out;
}

float TokenLogprob(std::span<const float> logits, int32_t token) {
  if (token < 0 || static_cast<size_t>(token) >= logits.size()) {
    return -std::numeric_limits<float>::infinity();
  }
  return static_cast<float>(logits[token] - LogSumExp(logits));
}

}  // namespace tokenfab
