#include <doctest/doctest.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <xgrad/tensor/safetensors.hpp>

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;

// A fresh directory under the system temporary directory, removed with its contents at scope exit.
class TempDir {
  public:
    TempDir() {
        static int counter = 0;
        path_ = fs::temp_directory_path() / fmt::format("xgrad_test_safetensors_{}_{}", ::getpid(), counter++);
        fs::remove_all(path_);
        fs::create_directories(path_);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    fs::path operator/(const std::string& name) const { return path_ / name; }
    const fs::path& path() const { return path_; }

    // Names of everything in the directory, sorted: shows leftover temporary files.
    std::vector<std::string> listing() const {
        std::vector<std::string> names;
        for (const auto& e : fs::directory_iterator(path_)) names.push_back(e.path().filename().string());
        std::sort(names.begin(), names.end());
        return names;
    }

  private:
    fs::path path_;
};

void write_bytes(const fs::path& path, const Bytes& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
}

Bytes read_bytes(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void append_le(Bytes& out, std::uint64_t value, int size) {
    for (int i = 0; i < size; ++i) out.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
}

// A safetensors file by hand: the length prefix (the header's true length unless `declared` says otherwise),
// the header text as given, then the data.
Bytes make_file(const std::string& header, const Bytes& data = {}, std::optional<std::uint64_t> declared = {}) {
    Bytes out;
    append_le(out, declared.value_or(header.size()), 8);
    out.insert(out.end(), header.begin(), header.end());
    out.insert(out.end(), data.begin(), data.end());
    return out;
}

Bytes f32_bytes(std::initializer_list<float> values) {
    Bytes out;
    for (float v : values) append_le(out, std::bit_cast<std::uint32_t>(v), 4);
    return out;
}

Bytes u16_bytes(std::initializer_list<std::uint16_t> values) {
    Bytes out;
    for (std::uint16_t v : values) append_le(out, v, 2);
    return out;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Writes `bytes` as a file and loads it, expecting a FileFormatError (any other exception fails the test case):
// returns its message after checking that it is one line starting with the file name.
std::string load_error(const TempDir& dir, const Bytes& bytes) {
    const fs::path path = dir / "bad.safetensors";
    write_bytes(path, bytes);
    try {
        xgrad::load_safetensors<float>(path.string());
    } catch (const xgrad::FileFormatError& e) {
        const std::string message = e.what();
        CHECK_MESSAGE(message.rfind(path.string() + ": ", 0) == 0, message);
        CHECK_MESSAGE(!contains(message, "\n"), message);
        return message;
    }
    FAIL("expected a FileFormatError");
    return {};
}

// The message contains every one of `parts`.
void check_message(const std::string& message, std::initializer_list<std::string> parts) {
    for (const std::string& part : parts) CHECK_MESSAGE(contains(message, part), "'", part, "' not in: ", message);
}

// The header of a single-tensor file.
std::string one_tensor(const std::string& dtype, const std::string& shape, std::uint64_t begin, std::uint64_t end) {
    return fmt::format(R"({{"t":{{"dtype":"{}","shape":{},"data_offsets":[{},{}]}}}})", dtype, shape, begin, end);
}

template <class T>
bool same_bits(const xgrad::Tensor<T>& a, const xgrad::Tensor<T>& b) {
    return xgrad::shape_of(a) == xgrad::shape_of(b) &&
           (a.size() == 0 || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

template <class T>
xgrad::TensorFile<T> sample_file() {
    xgrad::TensorFile<T> f;
    f.tensors["scalar"] = xgrad::Tensor<T>(T(3.5));
    f.tensors["vector"] = xgrad::Tensor<T>{T(1), T(-2), T(0.1), std::numeric_limits<T>::infinity(), T(-0.0),
                                           std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::denorm_min(),
                                           std::numeric_limits<T>::max()};
    xgrad::Tensor<T> cube = xgrad::Tensor<T>::from_shape({2, 3, 4});
    for (std::size_t i = 0; i < cube.size(); ++i) cube.data()[i] = T(0.25) * static_cast<T>(i) - T(3);
    f.tensors["layer.0.cube"] = cube;
    f.tensors["empty"] = xgrad::Tensor<T>::from_shape({0, 3});
    f.tensors["empty_tail"] = xgrad::Tensor<T>::from_shape({2, 0});
    f.metadata["format"] = "pt";
    f.metadata["note"] = "line one\nline \"two\" \xc3\xbc";
    return f;
}

template <class T>
void check_round_trip() {
    TempDir dir;
    const xgrad::TensorFile<T> saved = sample_file<T>();
    const std::string path = (dir / "model.safetensors").string();
    xgrad::save_safetensors(path, saved);
    CHECK(dir.listing() == std::vector<std::string>{"model.safetensors"});

    const xgrad::TensorFile<T> loaded = xgrad::load_safetensors<T>(path);
    CHECK(loaded.metadata == saved.metadata);
    REQUIRE(loaded.tensors.size() == saved.tensors.size());
    for (const auto& [name, tensor] : saved.tensors) {
        INFO(name);
        REQUIRE(loaded.tensors.count(name) == 1);
        CHECK(same_bits(loaded.tensors.at(name), tensor));
    }
    CHECK(xgrad::shape_of(loaded.tensors.at("scalar")).empty());
    CHECK(xgrad::shape_of(loaded.tensors.at("empty_tail")) == xgrad::Shape{2, 0});
}

}  // namespace

TEST_CASE("safetensors: float round trip keeps shapes, bits and metadata") { check_round_trip<float>(); }

TEST_CASE("safetensors: double round trip keeps shapes, bits and metadata") { check_round_trip<double>(); }

TEST_CASE("safetensors: serialized bytes match the format exactly") {
    xgrad::TensorFile<float> f;
    f.tensors["b"] = xgrad::Tensor<float>{1.0f, -2.0f};
    f.tensors["a"] = xgrad::Tensor<float>(0.5f);
    f.metadata.emplace("k", "v");

    // Metadata first (with the XXH3-64 of each tensor's bytes and of the metadata, as `xxhsum -H3` prints them
    // for those bytes), tensors by name, keys in the reference's order, padded with spaces to 256 = 32 * 8.
    const std::string json = R"({"__metadata__":{"k":"v","xgrad.xxh3_64:__metadata__":"4be8e96d681b0b6a",)"
                             R"("xgrad.xxh3_64:a":"c98dd7ed5d5dfd9b","xgrad.xxh3_64:b":"28a0ba9c345d3723"},)"
                             R"("a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})"
                             "  ";
    REQUIRE(json.size() == 256);
    Bytes expected = {0, 1, 0, 0, 0, 0, 0, 0};
    expected.insert(expected.end(), json.begin(), json.end());
    const Bytes data = {0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0};
    expected.insert(expected.end(), data.begin(), data.end());

    CHECK(xgrad::serialize_safetensors(f) == expected);
}

TEST_CASE("safetensors: an empty file set is a valid file") {
    const Bytes bytes = xgrad::serialize_safetensors(xgrad::TensorFile<double>{});
    CHECK(bytes == make_file("{}      "));
    const auto loaded = xgrad::parse_safetensors<double>(bytes.data(), bytes.size(), "memory");
    CHECK(loaded.tensors.empty());
    CHECK(loaded.metadata.empty());
}

TEST_CASE("safetensors: the writer refuses a tensor named __metadata__ and invalid UTF-8") {
    xgrad::TensorFile<float> f;
    f.tensors["__metadata__"] = xgrad::Tensor<float>{1.0f};
    CHECK_THROWS_AS(xgrad::serialize_safetensors(f), std::invalid_argument);

    xgrad::TensorFile<float> g;
    g.tensors["bad\xff"] = xgrad::Tensor<float>{1.0f};
    CHECK_THROWS_WITH_AS(xgrad::serialize_safetensors(g), doctest::Contains("UTF-8"), std::invalid_argument);
}

TEST_CASE("safetensors: F32 loads as double and F64 as float") {
    TempDir dir;
    xgrad::TensorFile<float> f;
    f.tensors["w"] = xgrad::Tensor<float>{0.1f, -3.0f, 1e-40f};
    const std::string path = (dir / "f32.safetensors").string();
    xgrad::save_safetensors(path, f);
    const auto as_double = xgrad::load_safetensors<double>(path);
    CHECK(as_double.tensors.at("w") == xgrad::Tensor<double>{double(0.1f), -3.0, double(1e-40f)});

    xgrad::TensorFile<double> g;
    g.tensors["w"] = xgrad::Tensor<double>{0.1, -3.0};
    xgrad::save_safetensors(path, g);
    const auto as_float = xgrad::load_safetensors<float>(path);
    CHECK(as_float.tensors.at("w") == xgrad::Tensor<float>{0.1f, -3.0f});
}

TEST_CASE("safetensors: F16 decodes normals, subnormals, zeros, infinities and NaN") {
    const Bytes data = u16_bytes({0x3c00, 0xc000, 0x7bff, 0x0001, 0x03ff, 0x0400, 0x7c00, 0xfc00, 0x7e00, 0x8000,
                                  0x3555});
    const Bytes bytes = make_file(one_tensor("F16", "[11]", 0, 22), data);
    const auto f = xgrad::parse_safetensors<float>(bytes.data(), bytes.size(), "f16");
    const xgrad::Tensor<float>& t = f.tensors.at("t");
    REQUIRE(t.size() == 11);
    CHECK(t(0) == 1.0f);
    CHECK(t(1) == -2.0f);
    CHECK(t(2) == 65504.0f);
    CHECK(t(3) == std::ldexp(1.0f, -24));  // smallest subnormal
    CHECK(t(4) == std::ldexp(1023.0f, -24));  // largest subnormal
    CHECK(t(5) == std::ldexp(1.0f, -14));  // smallest normal
    CHECK(t(6) == std::numeric_limits<float>::infinity());
    CHECK(t(7) == -std::numeric_limits<float>::infinity());
    CHECK(std::isnan(t(8)));
    CHECK(t(9) == 0.0f);
    CHECK(std::signbit(t(9)));
    CHECK(t(10) == 0.333251953125f);  // 0x3555, the half nearest 1/3

    const auto d = xgrad::parse_safetensors<double>(bytes.data(), bytes.size(), "f16");
    CHECK(d.tensors.at("t")(3) == std::ldexp(1.0, -24));
    CHECK(d.tensors.at("t")(2) == 65504.0);
}

TEST_CASE("safetensors: BF16 decodes normals, subnormals, infinities and NaN") {
    const Bytes data = u16_bytes({0x3f80, 0xc000, 0x7f7f, 0x0001, 0x7f80, 0xff80, 0x7fc0, 0x3eab});
    const Bytes bytes = make_file(one_tensor("BF16", "[2,4]", 0, 16), data);
    const auto f = xgrad::parse_safetensors<double>(bytes.data(), bytes.size(), "bf16");
    const xgrad::Tensor<double>& t = f.tensors.at("t");
    REQUIRE(xgrad::shape_of(t) == xgrad::Shape{2, 4});
    CHECK(t(0, 0) == 1.0);
    CHECK(t(0, 1) == -2.0);
    CHECK(t(0, 2) == std::ldexp(255.0, 120));  // largest finite: (2 - 2^-7) * 2^127
    CHECK(t(0, 3) == std::ldexp(1.0, -133));  // smallest subnormal
    CHECK(t(1, 0) == std::numeric_limits<double>::infinity());
    CHECK(t(1, 1) == -std::numeric_limits<double>::infinity());
    CHECK(std::isnan(t(1, 2)));
    CHECK(t(1, 3) == 0.333984375);
}

TEST_CASE("safetensors: zero-byte tensors may share a position with their neighbours") {
    const std::string header = R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
                               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("c":{"dtype":"F64","shape":[3,0,2],"data_offsets":[8,8]}}  )";
    const Bytes bytes = make_file(header, f32_bytes({1.5f, 2.5f}));
    const auto f = xgrad::parse_safetensors<float>(bytes.data(), bytes.size(), "zeros");
    CHECK(f.tensors.at("a").size() == 0);
    CHECK(f.tensors.at("b") == xgrad::Tensor<float>{1.5f, 2.5f});
    CHECK(xgrad::shape_of(f.tensors.at("c")) == xgrad::Shape{3, 0, 2});
}

TEST_CASE("safetensors: the file's size and header length are checked first") {
    TempDir dir;
    check_message(load_error(dir, {}), {"shorter than", "byte offset 0"});
    check_message(load_error(dir, {1, 2, 3}), {"3 bytes, shorter than", "byte offset 0"});
    check_message(load_error(dir, make_file("{}", {}, 100'000'001)), {"exceeds the limit", "byte offset 0"});
    check_message(load_error(dir, make_file("{}", {}, std::numeric_limits<std::uint64_t>::max())),
                  {"exceeds the limit"});
    check_message(load_error(dir, make_file("{}", {}, 3)), {"header length 3 runs past the end", "byte offset 0"});
}

TEST_CASE("safetensors: malformed JSON is reported at its byte offset") {
    TempDir dir;
    const std::string header = R"({"t":{"dtype":"F32",}})";
    const std::size_t bad = header.find(",}") + 1;
    check_message(load_error(dir, make_file(header)),
                  {"malformed JSON header", fmt::format("(byte offset {})", 8 + bad)});
    check_message(load_error(dir, make_file("{\"t\xff\":1}")), {"malformed JSON header", "byte offset"});
    check_message(load_error(dir, make_file("")), {"malformed JSON header", "(byte offset 8)"});
    check_message(load_error(dir, make_file("[1,2]")), {"must be an object, not array"});
    check_message(load_error(dir, make_file(R"({"t":[]})")), {"tensor \"t\": entry must be an object"});
}

TEST_CASE("safetensors: offsets must tile the data exactly") {
    TempDir dir;
    // Tensor "a" at [0, 8] and tensor "b" of the same size at [begin, end].
    auto two = [](std::uint64_t begin, std::uint64_t end) {
        return fmt::format(R"({{"a":{{"dtype":"F32","shape":[2],"data_offsets":[0,8]}},)"
                           R"("b":{{"dtype":"F32","shape":[2],"data_offsets":[{},{}]}}}})",
                           begin, end);
    };

    SUBCASE("overlap") {
        const std::string header = two(4, 12);
        check_message(load_error(dir, make_file(header, Bytes(12))),
                      {"overlaps tensor \"a\"", fmt::format("(byte offset {})", 8 + header.size() + 4)});
    }
    SUBCASE("hole") {
        const std::string header = two(12, 20);
        check_message(load_error(dir, make_file(header, Bytes(20))),
                      {"4 unused bytes before tensor \"b\"", fmt::format("(byte offset {})", 8 + header.size() + 8)});
    }
    SUBCASE("first tensor not at 0") {
        const std::string header = one_tensor("F32", "[2]", 4, 12);
        check_message(load_error(dir, make_file(header, Bytes(12))),
                      {"4 unused bytes", fmt::format("(byte offset {})", 8 + header.size())});
    }
    SUBCASE("trailing bytes") {
        const std::string header = one_tensor("F32", "[2]", 0, 8);
        check_message(load_error(dir, make_file(header, Bytes(11))),
                      {"3 trailing bytes", fmt::format("(byte offset {})", 8 + header.size() + 8)});
        check_message(load_error(dir, make_file("{}", Bytes(1))), {"1 trailing bytes", "(byte offset 10)"});
    }
    SUBCASE("truncated data") {
        const std::string header = two(8, 16);
        const Bytes bytes = make_file(header, Bytes(13));
        check_message(load_error(dir, bytes), {"tensor \"b\"", "runs past the end of the file",
                                               fmt::format("(byte offset {})", bytes.size())});
        // Cut inside the only tensor.
        check_message(load_error(dir, make_file(one_tensor("F32", "[2]", 0, 8), Bytes(5))),
                      {"runs past the end", "byte offset"});
    }
}

TEST_CASE("safetensors: dtypes are known, readable, or refused by name") {
    TempDir dir;
    check_message(load_error(dir, make_file(one_tensor("Q7", "[1]", 0, 1), Bytes(1))),
                  {"tensor \"t\"", "unknown dtype \"Q7\""});
    check_message(load_error(dir, make_file(one_tensor("I64", "[1]", 0, 8), Bytes(8))),
                  {"tensor \"t\"", "dtype I64 is not supported"});
    check_message(load_error(dir, make_file(one_tensor("F8_E4M3", "[1]", 0, 1), Bytes(1))),
                  {"F8_E4M3 is not supported"});
    check_message(load_error(dir, make_file(R"({"t":{"dtype":7,"shape":[],"data_offsets":[0,4]}})", Bytes(4))),
                  {"dtype must be a string"});
}

TEST_CASE("safetensors: shapes are checked for sign, rank, overflow and byte count") {
    TempDir dir;
    check_message(load_error(dir, make_file(one_tensor("F32", "[4294967296,4294967296,16]", 0, 0))),
                  {"overflows"});
    // The element count fits in 64 bits, the byte count does not.
    check_message(load_error(dir, make_file(one_tensor("F32", "[4611686018427387904]", 0, 0))), {"overflows"});
    check_message(load_error(dir, make_file(one_tensor("F32", "[18446744073709551616]", 0, 0))),
                  {"non-negative integers"});
    check_message(load_error(dir, make_file(one_tensor("F32", "[-1]", 0, 0))), {"non-negative integers"});
    check_message(load_error(dir, make_file(one_tensor("F32", "[2.0]", 0, 8), Bytes(8))), {"non-negative integers"});
    std::string rank65 = "[1";
    for (int i = 1; i < 65; ++i) rank65 += ",1";
    rank65 += "]";
    check_message(load_error(dir, make_file(one_tensor("F32", rank65, 0, 4), Bytes(4))),
                  {"rank 65 exceeds the limit of 64"});
    check_message(load_error(dir, make_file(one_tensor("F32", "[3]", 0, 8), Bytes(8))),
                  {"shape (3,) of F32 needs 12 bytes but data_offsets [0, 8] hold 8"});
}

TEST_CASE("safetensors: entries must have exactly dtype, shape and data_offsets") {
    TempDir dir;
    check_message(load_error(dir, make_file(one_tensor("F32", "[2]", 8, 0), Bytes(8))), {"end before they begin"});
    check_message(load_error(dir, make_file(R"({"t":{"dtype":"F32","shape":[],"data_offsets":[0,4,8]}})", Bytes(4))),
                  {"data_offsets must be an array of two non-negative integers"});
    check_message(load_error(dir, make_file(R"({"t":{"dtype":"F32","shape":[],"data_offsets":[0,-4]}})")),
                  {"data_offsets must be"});
    check_message(load_error(dir, make_file(R"({"t":{"dtype":"F32","shape":[]}})")), {"missing data_offsets"});
    check_message(
        load_error(dir, make_file(R"({"t":{"dtype":"F32","shape":[],"data_offsets":[0,4],"extra":1}})", Bytes(4))),
        {"unexpected key \"extra\""});
}

TEST_CASE("safetensors: duplicate names and keys are refused") {
    TempDir dir;
    const std::string entry = R"({"dtype":"F32","shape":[],"data_offsets":[0,4]})";
    check_message(load_error(dir, make_file(R"({"t":)" + entry + R"(,"t":)" + entry + "}", Bytes(4))),
                  {"duplicate tensor name \"t\""});
    check_message(
        load_error(dir, make_file(R"({"t":{"dtype":"F32","dtype":"F64","shape":[],"data_offsets":[0,4]}})", Bytes(4))),
        {"duplicate key \"dtype\""});
    check_message(load_error(dir, make_file(R"({"__metadata__":{"a":"1","a":"2"}})")), {"duplicate key \"a\""});
}

TEST_CASE("safetensors: metadata must map strings to strings") {
    TempDir dir;
    check_message(load_error(dir, make_file(R"({"__metadata__":{"epoch":3}})")),
                  {"__metadata__ value for \"epoch\" must be a string, not number"});
    check_message(load_error(dir, make_file(R"({"__metadata__":["a"]})")), {"__metadata__ must be an object"});
    const Bytes ok = make_file(R"({"__metadata__":{"epoch":"3"}})");
    CHECK(xgrad::parse_safetensors<float>(ok.data(), ok.size(), "m").metadata.at("epoch") == "3");
}

TEST_CASE("safetensors: names from the file cannot break the one-line message") {
    TempDir dir;
    const std::string message = load_error(dir, make_file(one_tensor("Q\\n7", "[1]", 0, 1), Bytes(1)));
    check_message(message, {R"(unknown dtype "Q\n7")"});
}

TEST_CASE("safetensors: in-memory parsing names its source") {
    const Bytes bytes = make_file("{}", Bytes(2));
    CHECK_THROWS_WITH_AS(xgrad::parse_safetensors<float>(bytes.data(), bytes.size(), "checkpoint blob"),
                         doctest::Contains("checkpoint blob: 2 trailing bytes"), xgrad::FileFormatError);
    CHECK_THROWS_AS(xgrad::parse_safetensors<float>(nullptr, 0, "nothing"), xgrad::FileFormatError);
}

TEST_CASE("safetensors: unreadable paths name the path and the reason") {
    TempDir dir;
    const std::string missing = (dir / "missing.safetensors").string();
    CHECK_THROWS_WITH_AS(xgrad::load_safetensors<float>(missing),
                         doctest::Contains((missing + ": cannot open: No such file or directory").c_str()),
                         xgrad::FileFormatError);
    CHECK_THROWS_WITH_AS(xgrad::load_safetensors<float>(dir.path().string()), doctest::Contains("not a regular file"),
                         xgrad::FileFormatError);
}

TEST_CASE("write_file_atomic: replaces the file and leaves no temporary behind") {
    TempDir dir;
    const std::string path = (dir / "out.bin").string();
    xgrad::write_file_atomic(path, {1, 2, 3});
    CHECK(read_bytes(path) == Bytes{1, 2, 3});
    xgrad::write_file_atomic(path, {9});
    CHECK(read_bytes(path) == Bytes{9});
    xgrad::write_file_atomic(path, {});
    CHECK(read_bytes(path).empty());
    CHECK(dir.listing() == std::vector<std::string>{"out.bin"});
}

TEST_CASE("write_file_atomic: a missing directory fails without creating anything") {
    TempDir dir;
    const std::string path = (dir / "no_such_dir" / "out.bin").string();
    CHECK_THROWS_WITH_AS(xgrad::write_file_atomic(path, {1}), doctest::Contains(path.c_str()), std::runtime_error);
    CHECK(dir.listing().empty());
}

TEST_CASE("write_file_atomic: a failed rename leaves the target and no temporary") {
    TempDir dir;
    // A non-empty directory cannot be replaced by a file: the failure comes after the temporary is written.
    const fs::path target = dir / "target";
    fs::create_directory(target);
    write_bytes(target / "inside", {7});
    CHECK_THROWS_AS(xgrad::write_file_atomic(target.string(), {1, 2, 3}), std::runtime_error);
    CHECK(fs::is_directory(target));
    CHECK(read_bytes(target / "inside") == Bytes{7});
    CHECK(dir.listing() == std::vector<std::string>{"target"});
}

TEST_CASE("write_file_atomic: a write that fails midway leaves the old file intact") {
    TempDir dir;
    const std::string path = (dir / "old.bin").string();
    xgrad::write_file_atomic(path, {4, 5, 6});

    // A file size limit makes write() fail partway through with EFBIG, as a full disk would with ENOSPC.
    rlimit saved{};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
    rlimit small = saved;
    small.rlim_cur = 4096;
    void (*previous_handler)(int) = std::signal(SIGXFSZ, SIG_IGN);
    const bool limited = ::setrlimit(RLIMIT_FSIZE, &small) == 0;
    bool threw = false;
    std::string message;
    if (limited) {
        try {
            xgrad::write_file_atomic(path, Bytes(1 << 16, 0xab));
        } catch (const std::runtime_error& e) {
            threw = true;
            message = e.what();
        }
        ::setrlimit(RLIMIT_FSIZE, &saved);
    }
    std::signal(SIGXFSZ, previous_handler);
    REQUIRE_MESSAGE(limited, "could not set RLIMIT_FSIZE");

    CHECK(threw);
    check_message(message, {path, "File too large"});
    CHECK(read_bytes(path) == Bytes{4, 5, 6});
    CHECK(dir.listing() == std::vector<std::string>{"old.bin"});
}

TEST_CASE("content hashes: written for every tensor, verified on load, hidden from the metadata") {
    TempDir dir;
    const std::string path = (dir / "model.safetensors").string();
    const auto saved = sample_file<float>();
    xgrad::save_safetensors(path, saved);
    const Bytes bytes = read_bytes(path);
    const std::string text(bytes.begin(), bytes.end());
    for (const auto& [name, tensor] : saved.tensors) CHECK(contains(text, "\"xgrad.xxh3_64:" + name + "\":\""));
    CHECK(xgrad::load_safetensors<float>(path).metadata == saved.metadata);  // the hashes are not user metadata
    // save_safetensors streams the same bytes serialize_safetensors builds in memory.
    CHECK(bytes == xgrad::serialize_safetensors(saved));

    // One flipped bit in any tensor's data is caught, naming the tensor and its byte offset.
    const std::uint64_t header = bytes[0] | std::uint64_t{bytes[1]} << 8;
    const std::size_t data_start = 8 + header;
    for (std::size_t at : {data_start, data_start + 17, bytes.size() - 1}) {
        CAPTURE(at);
        Bytes flipped = bytes;
        flipped[at] ^= 0x10;
        check_message(load_error(dir, flipped), {"do not match their content hash", "the file is damaged", "byte offset"});
    }
}

TEST_CASE("content hashes: files without them load, and a wrong, missing or extra hash is refused") {
    TempDir dir;
    const Bytes data = f32_bytes({1.0f, 2.0f});
    const std::string entry = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
    // As PyTorch writes it: no hash, and it loads.
    Bytes plain = make_file("{" + entry + "}", data);
    CHECK(xgrad::parse_safetensors<float>(plain.data(), plain.size(), "plain").tensors.at("t")(1) == 2.0f);
    // Written by xgrad: the right hash, and it loads too.
    Bytes good = xgrad::serialize_safetensors(xgrad::parse_safetensors<float>(plain.data(), plain.size(), "plain"));
    CHECK(xgrad::parse_safetensors<float>(good.data(), good.size(), "good").tensors.size() == 1);
    // The metadata's hash of an empty map: XXH3-64 of no bytes.
    const std::string empty = R"("xgrad.xxh3_64:__metadata__":"2d06800538d394c2")";
    check_message(load_error(dir, make_file(R"({"__metadata__":{"xgrad.xxh3_64:t":"0000000000000000"},)" + entry + "}", data)),
                  {"the metadata has no content hash"});
    check_message(load_error(dir, make_file(R"({"__metadata__":{)" + empty + R"(,"xgrad.xxh3_64:t":"0000000000000000"},)" + entry + "}", data)),
                  {"tensor \"t\": its bytes do not match their content hash (stored \"0000000000000000\""});
    check_message(load_error(dir, make_file(R"({"__metadata__":{)" + empty + R"(,"xgrad.xxh3_64:u":"0000000000000000"},)" + entry + "}", data)),
                  {"tensor \"t\" has no content hash"});
    // A changed metadata value (a learning rate, a vocabulary) is damage too.
    check_message(load_error(dir, make_file(R"({"__metadata__":{"lr":"0.1",)" + empty + R"(},)" + entry + "}", data)),
                  {"the metadata does not match its content hash"});
    const std::string hash = "4de8d78f7134f4b7";  // xxhsum -H3 of those 8 bytes
    const std::string good_header(good.begin() + 8, good.end());
    CHECK(contains(good_header, R"("xgrad.xxh3_64:t":")" + hash + "\""));
    const std::string with_extra = R"({"__metadata__":{)" + empty + R"(,"xgrad.xxh3_64:t":")" + hash + R"(","xgrad.xxh3_64:v":"1"},)" + entry + "}";
    check_message(load_error(dir, make_file(with_extra, data)), {"a content hash for tensor \"v\", which the file does not hold"});
}

TEST_CASE("content hashes: the writer refuses metadata keys reserved for them") {
    xgrad::TensorFile<float> f;
    f.metadata["xgrad.xxh3_64:t"] = "0123456789abcdef";
    CHECK_THROWS_WITH_AS(xgrad::serialize_safetensors(f), doctest::Contains("is reserved for the content hashes"), std::invalid_argument);
    TempDir dir;
    CHECK_THROWS_AS(xgrad::save_safetensors((dir / "x.safetensors").string(), f), std::invalid_argument);
    CHECK(dir.listing().empty());
}

TEST_CASE("check_atomic_write: fails early for every path the writer would fail on, and leaves nothing behind") {
    TempDir dir;
    const std::string fresh = (dir / "new.safetensors").string();
    xgrad::check_atomic_write(fresh);  // a new name in a writable folder
    CHECK(dir.listing().empty());
    write_bytes(dir / "old.safetensors", {1, 2});
    xgrad::check_atomic_write((dir / "old.safetensors").string());  // an existing file will be replaced
    CHECK(read_bytes(dir / "old.safetensors") == Bytes{1, 2});

    auto refused = [&](const std::string& path, const std::string& needle) {
        CAPTURE(path);
        CHECK_THROWS_WITH_AS(xgrad::check_atomic_write(path), doctest::Contains(needle.c_str()), std::runtime_error);
        // Whatever check_atomic_write refuses, the writer itself refuses too.
        CHECK_THROWS_AS(xgrad::write_file_atomic(path, {1}), std::runtime_error);
    };
    refused("", "the file name is empty");
    refused((dir / "sub/").string(), "names a folder");
    fs::create_directory(dir / "folder");
    refused((dir / "folder").string(), "is a folder");
    refused((dir / "missing" / "x.safetensors").string(), "cannot create a temporary file");
    // A name the filesystem takes, but not with the writer's ".tmp.<pid>.<n>" suffix: 250 + 14 > 255.
    refused((dir / std::string(250, 'n')).string(), "File name too long");
    refused((dir / std::string(300, 'n')).string(), "File name too long");
    // A dangling symbolic link is an entry rename() replaces: accepted, and left as it was.
    fs::create_symlink(dir / "nowhere", dir / "link.safetensors");
    xgrad::check_atomic_write((dir / "link.safetensors").string());
    CHECK(fs::is_symlink(dir / "link.safetensors"));
    CHECK(dir.listing() == std::vector<std::string>{"folder", "link.safetensors", "old.safetensors"});
}
