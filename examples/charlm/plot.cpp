// xgrad-charlm plot: the training picture from a --metrics CSV, drawn by gnuplot (Debian
// gnuplot-nox) through a pipe: train and validation bits per character against steps, and against
// wall time, side by side; SVG or PNG by the output's extension.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>
#include <sys/wait.h>

#include <fmt/format.h>

#include "training.hpp"

namespace charlm {

namespace {
constexpr const char* header = "step,train_loss,train_bpc,val_bpc,chars_per_s,elapsed_s";

struct Row {
    double step, train_bpc, val_bpc, elapsed;  // val_bpc NaN where the run had no validation
};

// Rows of a CSV that train --metrics wrote; anything else is refused naming the line.
std::vector<Row> read_metrics(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw InputError(fmt::format("--metrics {}: cannot open it", path));
    std::string line;
    if (!std::getline(in, line) || line != header) {
        throw InputError(fmt::format("--metrics {}: line 1 is not the header train --metrics writes ({})", path, header));
    }
    std::vector<Row> rows;
    for (std::size_t number = 2; std::getline(in, line); ++number) {
        std::vector<std::string> fields;
        std::stringstream split(line);
        for (std::string field; std::getline(split, field, ',');) fields.push_back(field);
        auto value = [&](std::size_t i, bool dash_is_nan) {
            if (dash_is_nan && fields[i] == "-") return std::nan("");
            std::size_t used = 0;
            double v = NAN;
            try {
                v = std::stod(fields[i], &used);
            } catch (const std::logic_error&) {
            }
            if (used != fields[i].size() || !std::isfinite(v)) {
                throw InputError(fmt::format("--metrics {}: line {}: field {} ('{}') is not a finite number", path, number, i + 1, fields[i]));
            }
            return v;
        };
        if (fields.size() != 6) throw InputError(fmt::format("--metrics {}: line {} has {} fields, not 6", path, number, fields.size()));
        rows.push_back({value(0, false), value(2, false), value(3, true), value(5, false)});
    }
    if (rows.empty()) throw InputError(fmt::format("--metrics {}: no rows to plot (train writes one per evaluation)", path));
    return rows;
}

bool on_path(const std::string& program) {
    const char* path = std::getenv("PATH");
    std::stringstream dirs(path ? path : "");
    for (std::string dir; std::getline(dirs, dir, ':');) {
        if (!dir.empty() && ::access((std::filesystem::path(dir) / program).c_str(), X_OK) == 0) return true;
    }
    return false;
}

// A path as a gnuplot single-quoted string (a quote inside is doubled).
std::string quoted(const std::string& path) {
    std::string out = "'";
    for (char c : path) out += c == '\'' ? std::string("''") : std::string(1, c);
    return out + "'";
}
}  // namespace

int plot(const PlotArgs& args) {
    const std::vector<Row> rows = read_metrics(args.metrics);
    const std::string extension = std::filesystem::path(args.out).extension().string();
    if (extension != ".svg" && extension != ".png") throw InputError(fmt::format("--out {}: the picture is .svg or .png", args.out));
    std::error_code same_error;
    if (std::filesystem::equivalent(args.out, args.metrics, same_error)) {
        throw InputError(fmt::format("--out {}: it is the metrics file", args.out));
    }
    if (args.out.find('\n') != std::string::npos) throw InputError("--out: a file name with a line break");
    // gnuplot writes a temporary file beside --out, renamed over it only when complete.
    const std::string temporary = fmt::format("{}.tmp-{}{}", args.out, ::getpid(), extension);
    std::string script = extension == ".svg" ? "set terminal svg size 1000,420 dynamic font 'sans,12'\n"
                                             : "set terminal png size 1000,420\n";
    script += fmt::format("set output {}\n", quoted(temporary));
    script += "set datafile missing 'NaN'\nset grid\nset key top right\nset ylabel 'bits per character'\n";
    script += "$metrics << EOD\n";
    for (const Row& r : rows) script += fmt::format("{} {} {} {}\n", r.step, r.train_bpc, std::isnan(r.val_bpc) ? std::string("NaN") : fmt::format("{}", r.val_bpc), r.elapsed);
    script += "EOD\n";
    script += fmt::format("set multiplot layout 1,2 title {}\n", quoted("xgrad-charlm: " + args.metrics));
    script += "set xlabel 'step'\n";
    script += "plot $metrics using 1:2 with linespoints title 'train', $metrics using 1:3 with linespoints title 'validation'\n";
    script += "set xlabel 'wall time (s)'\n";
    script += "plot $metrics using 4:2 with linespoints title 'train', $metrics using 4:3 with linespoints title 'validation'\n";
    script += "unset multiplot\nset output\n";

    if (!on_path("gnuplot")) throw InputError("plot: gnuplot was not found on PATH (Debian: apt-get install gnuplot-nox)");
    const std::string log = temporary + ".log";  // gnuplot's complaints, for the one-line error
    FILE* gnuplot = ::popen(fmt::format("gnuplot 2> {}", quoted(log)).c_str(), "w");
    if (gnuplot == nullptr) throw std::runtime_error("plot: cannot start gnuplot");
    std::fwrite(script.data(), 1, script.size(), gnuplot);
    const int status = ::pclose(gnuplot);
    std::ifstream complaints(log);
    std::string complaint, last;
    while (std::getline(complaints, complaint)) last = complaint.empty() ? last : complaint;
    std::error_code ignored;
    std::filesystem::remove(log, ignored);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0) || !std::filesystem::exists(temporary) ||
        std::filesystem::file_size(temporary, ignored) == 0) {
        std::filesystem::remove(temporary, ignored);
        throw std::runtime_error(fmt::format("plot: gnuplot could not draw {} (exit status {}){}", args.out, status,
                                             last.empty() ? "" : ": " + last));
    }
    std::filesystem::rename(temporary, args.out);
    fmt::print("plot: {} rows from {} drawn in {}\n", rows.size(), args.metrics, args.out);
    return 0;
}

}  // namespace charlm
