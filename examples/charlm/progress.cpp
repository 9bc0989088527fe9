#include "progress.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <numbers>
#include <string_view>
#include <sys/ioctl.h>
#include <unistd.h>

#include <fmt/format.h>

namespace charlm {

namespace {
std::string duration(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) return "-";
    const auto s = static_cast<long>(seconds + 0.5);
    return s >= 3600 ? fmt::format("{}h{:02}m", s / 3600, s / 60 % 60) : fmt::format("{}m{:02}s", s / 60, s % 60);
}
}  // namespace

std::string bpc_text(double bpc) { return std::isnan(bpc) ? "-" : fmt::format("{:.4f}", bpc); }

ProgressLine::ProgressLine()
    : terminal_(::isatty(STDERR_FILENO) != 0), dumb_terminal_([] {
          const char* term = std::getenv("TERM");
          return term == nullptr || std::string_view(term) == "dumb";
      }()) {}

void ProgressLine::report(const Progress& progress, double seconds, bool last) {
    const bool evaluated = progress.eval_every > 0 && progress.step % progress.eval_every == 0;
    if (terminal_ && !last && !evaluated && seconds - shown_at_ < 0.1) return;
    shown_at_ = seconds;
    double eta = seconds / static_cast<double>(progress.step - progress.first_step) *
                 static_cast<double>(progress.total_steps - progress.step);
    if (progress.time_limit) eta = std::min(eta, *progress.time_limit - seconds);
    const std::string line = fmt::format("step {} loss {:.4f} train {:.3f} bpc val {} bpc {:.0f} chars/s ETA {}", progress.step,
                                         progress.train_loss, progress.train_loss / std::numbers::ln2, bpc_text(progress.val_bpc),
                                         progress.chars_per_second, duration(eta));
    if (terminal_) {
        winsize size{};
        const std::size_t width = ::ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 1 ? size.ws_col - 1 : 79;
        const std::string_view shown = std::string_view(line).substr(0, width);
        if (dumb_terminal_) {  // no escape sequences: spaces over the rest of the old line
            fmt::print(stderr, "\r{:<{}}", shown, width);
        } else {
            fmt::print(stderr, "\r{}\x1b[K", shown);  // ESC [K: clear the rest of the line
        }
    } else if (progress.step % 100 == 0 || evaluated) {
        fmt::print(stderr, "{}\n", line);
    }
}

void ProgressLine::end() const {
    if (terminal_) fmt::print(stderr, "\n");
}

}  // namespace charlm
