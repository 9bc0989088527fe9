// xgrad-charlm train's progress line on stderr: the step, the loss, the bits per character, the
// speed and the time left.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

namespace charlm {

// Bits per character as the progress line, the metrics rows and the summary print them: "-" for NaN
// (no validation yet, or no validation split).
std::string bpc_text(double bpc);

// Where training stands after a step, as the progress line reports it.
struct Progress {
    std::int64_t step = 0;             // steps done, counting a resumed checkpoint's
    std::int64_t first_step = 0;       // this run's first step
    std::int64_t total_steps = 0;      // the step the run ends at, unless the time limit comes first
    std::int64_t eval_every = 0;       // steps between evaluations (0: none)
    std::optional<double> time_limit;  // --time-limit, seconds of this run
    double train_loss = NAN;           // the last step's, in nats per character
    double val_bpc = NAN;              // the last evaluation's (NaN: none yet)
    double chars_per_second = 0;       // this run's training characters per second of training time
};

// The line on stderr. Whether that is a terminal, and whether the terminal takes escape sequences
// (TERM), are read once, when the run starts; the terminal's width at every line.
class ProgressLine {
  public:
    ProgressLine();

    // A live line on a terminal (rewritten in place at most ten times a second, cut to the
    // terminal's width so that it never wraps); every 100 steps and at each evaluation on a pipe.
    // `seconds`: training time so far; `last`: the run's last step.
    void report(const Progress& progress, double seconds, bool last);

    // Ends a live line on a terminal, so that what follows starts on a line of its own.
    void end() const;

  private:
    const bool terminal_;
    const bool dumb_terminal_;
    double shown_at_ = -1;  // when the terminal's progress line was last written (training seconds)
};

}  // namespace charlm
