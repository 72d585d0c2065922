// Quantities with units, as written in description files ("48KiB", "1.1GHz", "32bit/cycle").
// Each parser returns the value in the unit its name states and throws Error naming `where`
// (file and key) on a missing or unknown unit, a malformed number, or a negative value.
#pragma once

#include <string>
#include <string_view>

namespace tessera::arch {

double parse_bytes(std::string_view text, const std::string& where);  // B, KB=1e3, KiB=1024, MB, MiB, GB, GiB, TB, TiB
double parse_frequency_hz(std::string_view text, const std::string& where);        // Hz, kHz, MHz, GHz
double parse_bytes_per_second(std::string_view text, const std::string& where);    // B/s, KB/s.. TB/s, b/s, Kb/s.. Tb/s
double parse_bytes_per_cycle(std::string_view text, const std::string& where);     // B/cycle, bit/cycle
double parse_cycles(std::string_view text, const std::string& where);              // cycle, cycles
double parse_energy_pj(std::string_view text, const std::string& where);           // fJ, pJ, nJ
double parse_energy_pj_per_byte(std::string_view text, const std::string& where);  // {fJ,pJ,nJ}/{B,bit}
double parse_seconds(std::string_view text, const std::string& where);             // ns, us, ms, s
double parse_watts(std::string_view text, const std::string& where);               // W, kW
double parse_area_mm2(std::string_view text, const std::string& where);            // um2, mm2
double parse_area_mm2_per_byte(std::string_view text, const std::string& where);   // {um2,mm2}/{B,KiB,MiB}
double parse_watts_per_mm2(std::string_view text, const std::string& where);       // {mW,W}/mm2

}  // namespace tessera::arch
