// xgrad-charlm plot: the training picture from a --metrics CSV, drawn by gnuplot (Debian
// gnuplot-nox) through a pipe: train and validation bits per character against steps, and against
// wall time, side by side; SVG or PNG by the output's extension.
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <fcntl.h>
#include <unistd.h>
#include <sys/wait.h>

#include <fmt/format.h>

#include "outputs.hpp"
#include "training.hpp"

namespace charlm {

namespace {
constexpr const char* header = "step,train_loss,train_bpc,val_bpc,chars_per_s,elapsed_s";

struct Row {
    double step, train_bpc, val_bpc, elapsed;  // val_bpc NaN where the run had no validation
};

// Rows of a CSV that train --metrics wrote; anything else is refused naming the line. A resumed run
// appends rows whose elapsed time starts again from 0: they are shifted to follow the earlier ones.
std::vector<Row> read_metrics(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw InputError(fmt::format("--metrics {}: cannot open it", path));
    std::string line;
    if (std::getline(in, line) && line.ends_with('\r')) line.pop_back();
    if (!in || line != header) {
        throw InputError(fmt::format("--metrics {}: line 1 is not the header train --metrics writes ({})", path, header));
    }
    std::vector<Row> rows;
    double offset = 0;  // wall time of the runs before a resumed one
    for (std::size_t number = 2; std::getline(in, line); ++number) {
        if (line.ends_with('\r')) line.pop_back();  // a file that went through Windows
        if (line.find_first_not_of(" \t") == std::string::npos) continue;
        std::vector<std::string> fields;  // every comma separates two fields: "1,2," has three
        for (std::size_t at = 0;;) {
            const std::size_t comma = line.find(',', at);
            fields.push_back(line.substr(at, comma - at));
            if (comma == std::string::npos) break;
            at = comma + 1;
        }
        auto value = [&](std::size_t i, bool dash_is_nan) {
            if (dash_is_nan && fields[i] == "-") return std::nan("");
            const char* text = fields[i].c_str();
            char* end = nullptr;
            errno = 0;
            const double v = std::strtod(text, &end);
            // ERANGE also marks a value too small for a normal double (1e-308): kept as strtod rounds it.
            const bool overflow = errno == ERANGE && std::abs(v) > 1;
            if (fields[i].empty() || end != text + fields[i].size() || overflow || !std::isfinite(v)) {
                throw InputError(fmt::format("--metrics {}: line {}: field {} ('{}') is not a finite number", path, number, i + 1, fields[i]));
            }
            return v;
        };
        if (fields.size() != 6) throw InputError(fmt::format("--metrics {}: line {} has {} fields, not 6", path, number, fields.size()));
        Row row{value(0, false), value(2, false), value(3, true), value(5, false)};
        if (!rows.empty() && row.elapsed + offset < rows.back().elapsed) offset = rows.back().elapsed;
        row.elapsed += offset;
        rows.push_back(row);
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

// Whether gnuplot's picture is whole: gnuplot may exit 0 although its writes failed (a full disk),
// leaving a file cut short. An SVG ends with its closing tag, a PNG with its IEND chunk.
bool whole_picture(const std::string& path, const std::string& extension) {
    std::ifstream in(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (extension == ".png") {
        static const std::string signature("\x89PNG\r\n\x1a\n", 8), end("\0\0\0\0IEND\xae\x42\x60\x82", 12);
        return bytes.starts_with(signature) && bytes.ends_with(end);
    }
    const std::size_t last = bytes.find_last_not_of(" \t\r\n");
    return last != std::string::npos && std::string_view(bytes).substr(0, last + 1).ends_with("</svg>");
}

// Flushes a file the caller wrote to the disk, before a rename makes it the one the user has.
bool synced(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool ok = ::fsync(fd) == 0;
    return ::close(fd) == 0 && ok;
}

// A string as a gnuplot double-quoted string: a backslash and a quote escaped, so that no other
// escape applies, and a backquote written as its octal escape, since gnuplot runs `command` inside
// double quotes. (In single quotes a quote is doubled, but gnuplot 5.4 misreads two in a row.)
std::string gnuplot_quoted(const std::string& text) {
    std::string out = "\"";
    for (char c : text) {
        if (c == '`') {
            out += "\\140";
            continue;
        }
        if (c == '\\' || c == '"') out += '\\';
        out += c;
    }
    return out + "\"";
}

// A path as a shell single-quoted word (a quote inside ends the word, is escaped, and reopens it).
std::string shell_quoted(const std::string& path) {
    std::string out = "'";
    for (char c : path) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
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
    for (const auto& [flag, path] : {std::pair{"--out", args.out}, std::pair{"--metrics", args.metrics}}) {
        if (path.find_first_of("\n\r") != std::string::npos) throw InputError(fmt::format("{}: a file name with a line break", flag));
    }
    // A link's target is drawn, and the link stays (as train's --out).
    const std::string target = resolve_output(args.out);
    const std::filesystem::path folder = std::filesystem::absolute(target).parent_path();
    if (!std::filesystem::is_directory(folder) || ::access(folder.c_str(), W_OK) != 0) {
        throw InputError(fmt::format("--out {}: its folder {} does not exist or cannot be written", args.out, folder.string()));
    }
    if (std::filesystem::is_directory(args.out)) throw InputError(fmt::format("--out {}: it is a folder", args.out));
    // gnuplot writes a temporary file beside --out, renamed over it only when complete.
    const std::string temporary = fmt::format("{}.tmp-{}{}", target, ::getpid(), extension);
    std::string script = extension == ".svg" ? "set terminal svg size 1000,420 dynamic font 'sans,12'\n"
                                             : "set terminal png size 1000,420\n";
    script += fmt::format("set output {}\n", gnuplot_quoted(temporary));
    // noenhanced: an '_' in a file name is a character, not a subscript.
    script += "set termoption noenhanced\nset datafile missing 'NaN'\nset grid\nset key top right\nset ylabel 'bits per character'\n";
    script += "$metrics << EOD\n";
    for (const Row& r : rows) script += fmt::format("{} {} {} {}\n", r.step, r.train_bpc, std::isnan(r.val_bpc) ? std::string("NaN") : fmt::format("{}", r.val_bpc), r.elapsed);
    script += "EOD\n";
    script += fmt::format("set multiplot layout 1,2 title {}\n", gnuplot_quoted("xgrad-charlm: " + args.metrics));
    script += "set xlabel 'step'\n";
    script += "plot $metrics using 1:2 with linespoints title 'train', $metrics using 1:3 with linespoints title 'validation'\n";
    script += "set xlabel 'wall time (s)'\n";
    script += "plot $metrics using 4:2 with linespoints title 'train', $metrics using 4:3 with linespoints title 'validation'\n";
    script += "unset multiplot\nset output\n";

    if (!on_path("gnuplot")) throw InputError("plot: gnuplot was not found on PATH (Debian: apt-get install gnuplot-nox)");
    const std::string log = temporary + ".log";  // gnuplot's complaints, for the one-line error
    FILE* gnuplot = ::popen(fmt::format("gnuplot 2> {}", shell_quoted(log)).c_str(), "w");
    if (gnuplot == nullptr) throw std::runtime_error("plot: cannot start gnuplot");
    // A gnuplot that stopped reading must not end this process with SIGPIPE: the write just fails.
    const auto previous = std::signal(SIGPIPE, SIG_IGN);
    const bool written = std::fwrite(script.data(), 1, script.size(), gnuplot) == script.size();
    const int status = ::pclose(gnuplot);
    std::signal(SIGPIPE, previous);
    std::ifstream complaints(log);
    std::string complaint, first;
    while (first.empty() && std::getline(complaints, complaint)) first = complaint;  // the cause; what follows repeats it
    std::error_code ignored;
    std::filesystem::remove(log, ignored);
    if (!written || !(WIFEXITED(status) && WEXITSTATUS(status) == 0) || !std::filesystem::exists(temporary) ||
        std::filesystem::file_size(temporary, ignored) == 0) {
        std::filesystem::remove(temporary, ignored);
        throw std::runtime_error(fmt::format("plot: gnuplot could not draw {} (exit status {}){}", args.out,
                                             WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
                                             first.empty() ? "" : ": " + first));
    }
    if (!whole_picture(temporary, extension) || !synced(temporary)) {
        const auto size = std::filesystem::file_size(temporary, ignored);
        std::filesystem::remove(temporary, ignored);
        throw std::runtime_error(fmt::format("plot: the picture gnuplot wrote is incomplete ({} bytes; is the disk full?); {} is "
                                             "unchanged", size, args.out));
    }
    std::filesystem::rename(temporary, target, ignored);
    if (ignored) {
        std::error_code also_ignored;
        std::filesystem::remove(temporary, also_ignored);
        throw InputError(fmt::format("--out {}: cannot replace it: {}", args.out, ignored.message()));
    }
    fmt::print("plot: {} rows from {} drawn in {}\n", rows.size(), args.metrics, args.out);
    return 0;
}

}  // namespace charlm
