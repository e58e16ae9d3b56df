#include "scheduler/load_predictor.h"

#include <algorithm>
#include <cmath>

#include "common/strings.h"

namespace tokenfab {

void MovingAveragePredictor::Observe(double value) {
  if (!std::isfinite(value)) return;  // a broken interval teaches nothing
  values_.push_back(value);
  sum_ += value;
  if (values_.size() > window_) {
    sum_ -= values_.front();
    values_.pop_front();
  }
}

double MovingAveragePredictor::Predict() const {
  if (values_.empty()) return 0;
  return std::max(0.0, sum_ / static_cast<double>(values_.size()));
}

void HoltPredictor::Observe(double value) {
  if (!std::isfinite(value)) return;
  if (!started_) {
    started_ = true;
    level_ = value;
    trend_ = 0;
    return;
  }
  const double forecast = level_ + o_.phi * trend_;
  const double level = forecast + o_.alpha * (value - forecast);
  trend_ = o_.beta * (level - level_) + (1 - o_.beta) * o_.phi * trend_;
  level_ = level;
}

double HoltPredictor::Predict() const {
  if (!started_) return 0;
  return std::max(0.0, level_ + o_.phi * trend_);
}

absl::StatusOr<std::unique_ptr<LoadPredictor>> CreateLoadPredictor(std::string_view kind,
                                                                   int window,
                                                                   HoltPredictor::Options holt) {
  if (kind == "moving_average") {
    if (window < 1 || window > 10000) {
      return absl::InvalidArgumentError(
          StrCat("the moving average window must be 1 to 10000 intervals, got ", window));
    }
    return std::make_unique<MovingAveragePredictor>(window);
  }
  if (kind == "holt") {
    for (auto [name, v] : {std::pair<const char*, double>{"alpha", holt.alpha},
                           {"beta", holt.beta},
                           {"phi", holt.phi}}) {
      if (!(v > 0 && v <= 1)) {
        return absl::InvalidArgumentError(StrCat("holt ", name, " must be in (0, 1], got ", v));
      }
    }
    return std::make_unique<HoltPredictor>(holt);
  }
  return absl::InvalidArgumentError(
      StrCat("predictor must be moving_average or holt, got '", kind, "'"));
}

}  // namespace tokenfab
