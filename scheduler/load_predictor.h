// One-step-ahead predictors of a load series the planner watches each
// interval (request rate, mean prompt and output length): a moving average,
// and Holt's damped-trend exponential smoothing, which follows ramps that
// a moving average lags behind.
//
// Not thread-safe: one planner thread owns each.
#ifndef TOKENFAB_SCHEDULER_LOAD_PREDICTOR_H_
#define TOKENFAB_SCHEDULER_LOAD_PREDICTOR_H_

#include <deque>
#include <memory>
#include <string_view>

#include "absl/status/statusor.h"

namespace tokenfab {

class LoadPredictor {
 public:
  virtual ~LoadPredictor() = default;
  // The value observed over the interval that just ended.
  virtual void Observe(double value) = 0;
  // The next interval's value; 0 before any observation, never negative.
  virtual double Predict() const = 0;
};

// The mean of the last `window` observations.
class MovingAveragePredictor : public LoadPredictor {
 public:
  explicit MovingAveragePredictor(int window) : window_(window < 1 ? 1 : window) {}
  void Observe(double value) override;
  double Predict() const override;

 private:
  const size_t window_;
  std::deque<double> values_;
  double sum_ = 0;
};

// Holt's linear method with a damped trend: level += alpha * error, trend
// smoothed with beta, and the trend multiplied by phi (< 1) each step so a
// ramp that stops is not extrapolated for ever.
class HoltPredictor : public LoadPredictor {
 public:
  struct Options {
    // Chosen so that a doubling of the rate is followed within 2% in two
    // intervals with little overshoot, while a ramp is still tracked.
    double alpha = 0.8;
    double beta = 0.2;
    double phi = 0.6;
  };
  explicit HoltPredictor(Options options) : o_(options) {}
  void Observe(double value) override;
  double Predict() const override;

 private:
  const Options o_;
  bool started_ = false;
  double level_ = 0;
  double trend_ = 0;
};

// "moving_average" (window 5) or "holt". InvalidArgument otherwise, or for
// parameters outside (0, 1].
absl::StatusOr<std::unique_ptr<LoadPredictor>> CreateLoadPredictor(
    std::string_view kind, int moving_average_window = 5, HoltPredictor::Options holt = {});

}  // namespace tokenfab

#endif  // TOKENFAB_SCHEDULER_LOAD_PREDICTOR_H_
