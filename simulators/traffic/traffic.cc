#include "simulators/traffic/traffic.h"

#include <stdexcept>

namespace authswitch::netsim {

std::string_view kind_name(Kind /*k*/) noexcept { return "purchase"; }

bool Expectation::accepts(std::string_view /*code*/) const noexcept { return false; }
void Expectation::set(std::string_view /*code*/, std::int64_t /*amount*/) noexcept {}
void Expectation::add(std::string_view /*code*/) noexcept {}

TrafficConfig TrafficConfig::load(const std::string& toml_path) {
  throw std::runtime_error(toml_path + ": not implemented yet");
}
TrafficConfig TrafficConfig::defaults() { return {}; }

struct TrafficGenerator::State {};

TrafficGenerator::TrafficGenerator(const Portfolio& /*p*/, TrafficConfig /*c*/,
                                   std::uint64_t /*seed*/)
    : s_(std::make_unique<State>()) {}
TrafficGenerator::~TrafficGenerator() = default;
TrafficGenerator::TrafficGenerator(TrafficGenerator&&) noexcept = default;
TrafficGenerator& TrafficGenerator::operator=(TrafficGenerator&&) noexcept = default;

bool TrafficGenerator::next(std::int64_t /*now_ms*/, Request& /*out*/) { return false; }
void TrafficGenerator::on_response(const Request& /*r*/, std::string_view /*code*/,
                                   std::int64_t /*amount_minor*/) {}
void TrafficGenerator::on_lost(const Request& /*r*/) {}
std::size_t TrafficGenerator::accounts() const noexcept { return 0; }
std::size_t TrafficGenerator::in_flight() const noexcept { return 0; }
std::size_t TrafficGenerator::retired() const noexcept { return 0; }
std::string_view TrafficGenerator::acquirer_id() const noexcept { return {}; }

iso8583::Result<std::size_t> encode_request(const iso8583::Dialect& /*dialect*/,
                                            const Request& /*r*/, iso8583::MessageBuilder& b,
                                            std::span<std::byte> out) {
  return b.encode(out);
}

}  // namespace authswitch::netsim
