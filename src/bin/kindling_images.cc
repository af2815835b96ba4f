// kindling-images: what the chunk server holds, image by image.
//
//   kindling-images list                   every image: name, size, chunks
//   kindling-images info NAME...           size, distinct bytes, bytes no other image shares, and
//                                          bytes read at start (its stored start recording)
//   kindling-images compare NAME NAME      bytes the two images share (dedup ratio)
//   kindling-images gc                     deletes chunks no image references
#include <CLI/CLI.hpp>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "chunks/chunk_client.h"

using namespace kindling;
using namespace kindling::chunks;

namespace {

std::string Mib(uint64_t bytes) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.2f MiB", bytes / 1048576.0);
  return buf;
}

std::string Percent(uint64_t part, uint64_t whole) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.1f%%", whole ? 100.0 * part / whole : 0.0);
  return buf;
}

int Fail(const Status& s) {
  fprintf(stderr, "kindling-images: %s\n", s.message().c_str());
  return 1;
}

std::map<Digest, uint32_t> Distinct(const Manifest& m) {
  std::map<Digest, uint32_t> out;
  for (const auto& c : m.chunks) out.emplace(c.digest, c.size);
  return out;
}

uint64_t Sum(const std::map<Digest, uint32_t>& chunks) {
  uint64_t n = 0;
  for (const auto& [d, size] : chunks) n += size;
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Inspect the images a Kindling chunk server holds"};
  std::string url = "http://127.0.0.1:9300";
  app.add_option("--chunkd", url, "chunk server URL (kindlingd embeds one on 127.0.0.1:9300)");
  app.require_subcommand(1);
  auto* list = app.add_subcommand("list", "every image: name, size, chunks");
  std::vector<std::string> names;
  auto* info = app.add_subcommand("info", "size, distinct and unique bytes, bytes read at start");
  info->add_option("names", names, "image names")->required();
  std::vector<std::string> pair;
  auto* compare = app.add_subcommand("compare", "bytes two images share");
  compare->add_option("names", pair, "two image names")->required()->expected(2);
  auto* gc = app.add_subcommand("gc", "delete chunks no image references");
  CLI11_PARSE(app, argc, argv);

  ChunkClientOptions opts;
  opts.url = url;
  ChunkClient client(opts);

  if (*gc) {
    auto r = client.Collect();
    if (!r.ok()) return Fail(r.status());
    printf("%s\n", r->c_str());
    return 0;
  }
  auto all = client.ListImages();
  if (!all.ok()) return Fail(all.status());
  std::map<std::string, Manifest> manifests;
  for (const std::string& name : *all) {
    auto m = client.GetImage(name);
    if (m.ok()) manifests[name] = std::move(m).value();
  }
  auto get = [&](const std::string& name) -> Result<Manifest> {
    auto it = manifests.find(name);
    if (it == manifests.end()) return Status::Error("no image named " + name);
    return it->second;
  };

  if (*list) {
    for (const auto& [name, m] : manifests)
      printf("%-90s %12s %6zu chunks  %s\n", name.c_str(), Mib(m.size).c_str(), m.chunks.size(),
             m.Id().Hex().substr(0, 16).c_str());
    return 0;
  }
  if (*info) {
    for (const std::string& name : names) {
      auto m = get(name);
      if (!m.ok()) return Fail(m.status());
      auto distinct = Distinct(*m);
      std::set<Digest> elsewhere;
      for (const auto& [other, om] : manifests)
        if (other != name)
          for (const auto& c : om.chunks) elsewhere.insert(c.digest);
      uint64_t unique = 0;
      for (const auto& [d, size] : distinct)
        if (!elsewhere.count(d)) unique += size;
      printf("%s\n  id                 %s\n  size               %s (%zu chunks)\n", name.c_str(),
             m->Id().Hex().c_str(), Mib(m->size).c_str(), m->chunks.size());
      printf("  distinct bytes     %s\n", Mib(Sum(distinct)).c_str());
      printf("  unique bytes       %s (in no other image)\n", Mib(unique).c_str());
      auto rec = client.GetRecording("start/" + m->Id().Hex());
      if (!rec.ok()) {
        printf("  read at start      (no start recorded yet)\n");
        continue;
      }
      uint64_t read = 0, count = 0;
      auto doc = nlohmann::json::parse(*rec, nullptr, false);
      if (doc.is_object() && doc.contains("chunks") && doc["chunks"].is_array())
        for (const auto& v : doc["chunks"])
          if (v.is_number_unsigned() && v.get<uint64_t>() < m->chunks.size()) {
            read += m->chunks[v.get<uint64_t>()].size;
            ++count;
          }
      printf("  read at start      %s (%llu chunks, %s of the image)\n", Mib(read).c_str(),
             static_cast<unsigned long long>(count), Percent(read, m->size).c_str());
    }
    return 0;
  }
  if (*compare) {
    auto a = get(pair[0]);
    if (!a.ok()) return Fail(a.status());
    auto b = get(pair[1]);
    if (!b.ok()) return Fail(b.status());
    auto da = Distinct(*a), db = Distinct(*b);
    uint64_t shared = 0;
    for (const auto& [d, size] : da)
      if (db.count(d)) shared += size;
    uint64_t stored = Sum(da) + Sum(db) - shared;
    printf("%s: %s\n%s: %s\nshared         %s\nstored         %s of %s (dedup saves %s)\n", pair[0].c_str(),
           Mib(a->size).c_str(), pair[1].c_str(), Mib(b->size).c_str(), Mib(shared).c_str(), Mib(stored).c_str(),
           Mib(a->size + b->size).c_str(), Percent(a->size + b->size - stored, a->size + b->size).c_str());
    return 0;
  }
  return 0;
}
