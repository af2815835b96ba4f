#include "images/package_rootfs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <deque>
#include <map>
#include <set>
#include <sstream>

#include "common/files.h"
#include "common/ids.h"
#include "common/subprocess.h"

namespace kindling::images {
namespace {

// Bumped whenever the way a tree is assembled changes (the key then changes with it).
constexpr const char* kBuilderVersion = "kindling-rootfs-v2";

// Package management and maintainer-script machinery: nothing a function runs needs it.
const char* const kStopPackages[] = {"dpkg", "debconf", "tar", "perl-base", "init-system-helpers",
                                     "install-info", "debianutils", "libc-bin"};
// Documentation and translations: large, never read at run time.
const char* const kExcludedPrefixes[] = {"/usr/share/doc/", "/usr/share/man/", "/usr/share/info/",
                                         "/usr/share/lintian/", "/usr/share/locale/", "/usr/share/bug/",
                                         "/usr/share/doc-base/"};
// Top-level names that merged-/usr hosts make symlinks into /usr.
const char* const kTopLinks[] = {"bin", "lib", "lib32", "lib64", "libx32", "sbin"};

struct InstalledPackage {
  std::string version;
  std::vector<std::vector<std::string>> depends;  // each: alternatives
};

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  return out;
}

std::string Trim(std::string s) {
  size_t a = s.find_first_not_of(" \t");
  if (a == std::string::npos) return "";
  size_t b = s.find_last_not_of(" \t");
  return s.substr(a, b - a + 1);
}

// "libc6:amd64 (>= 2.34)" -> "libc6"
std::string PackageName(const std::string& relation) {
  std::string name = Trim(relation);
  size_t cut = name.find_first_of(" (:");
  return cut == std::string::npos ? name : name.substr(0, cut);
}

std::vector<std::vector<std::string>> ParseRelations(const std::string& field) {
  std::vector<std::vector<std::string>> out;
  for (const std::string& clause : Split(field, ',')) {
    std::vector<std::string> alts;
    for (const std::string& alt : Split(clause, '|')) {
      std::string name = PackageName(alt);
      if (!name.empty()) alts.push_back(name);
    }
    if (!alts.empty()) out.push_back(std::move(alts));
  }
  return out;
}

// Every installed package, and which installed package provides each virtual name.
Status ReadDpkgDatabase(std::map<std::string, InstalledPackage>* installed,
                        std::map<std::string, std::string>* provider) {
  auto out = RunCommand({"dpkg-query", "-W", "-f",
                         "${Package}\t${db:Status-Status}\t${Version}\t${Provides}\t${Pre-Depends}, ${Depends}\n"});
  if (!out.ok()) return out.status();
  for (const std::string& line : Split(*out, '\n')) {
    auto f = Split(line, '\t');
    if (f.size() < 5 || f[1] != "installed") continue;
    InstalledPackage& p = (*installed)[f[0]];
    p.version = f[2];
    p.depends = ParseRelations(f[4]);
    for (const auto& alts : ParseRelations(f[3]))
      for (const std::string& v : alts) provider->emplace(v, f[0]);
  }
  return Status::Ok();
}

bool Excluded(const std::string& path) {
  for (const char* prefix : kExcludedPrefixes)
    if ((path + "/").rfind(prefix, 0) == 0) return true;
  return false;
}

Status CopyRegular(const std::string& from, const std::string& to, mode_t mode) {
  std::string data;
  if (Status s = ReadFile(from, &data); !s.ok()) return s;
  if (Status s = WriteFile(to, data); !s.ok()) return s;
  // No set-id bits: sandboxes mount nosuid anyway.
  if (chmod(to.c_str(), mode & 0777) != 0) return Status::Errno("chmod " + to);
  return Status::Ok();
}

std::string Dirname(const std::string& p) {
  size_t slash = p.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : p.substr(0, slash);
}

// Copies one host path into the tree at the same place, its parent resolved on the host.
Status CopyPath(const std::string& host_path, const std::string& tree_path, const std::string& root) {
  struct stat st;
  if (lstat(host_path.c_str(), &st) != 0) return Status::Ok();  // listed but gone (e.g. a removed conffile)
  char parent[PATH_MAX];
  if (!realpath(Dirname(host_path).c_str(), parent)) return Status::Ok();
  std::string tree_parent = root + (tree_path == host_path ? std::string(parent) : Dirname(tree_path));
  if (tree_parent.back() == '/') tree_parent.pop_back();
  std::string base = tree_path.substr(tree_path.rfind('/') + 1);
  std::string dst = tree_parent + "/" + base;
  if (Status s = MakeDirs(tree_parent, 0755); !s.ok()) return s;
  if (S_ISDIR(st.st_mode)) return MakeDirs(dst, 0755);
  if (S_ISLNK(st.st_mode)) {
    char target[PATH_MAX];
    ssize_t n = readlink(host_path.c_str(), target, sizeof target - 1);
    if (n < 0) return Status::Errno("readlink " + host_path);
    unlink(dst.c_str());
    if (symlink(std::string(target, static_cast<size_t>(n)).c_str(), dst.c_str()) != 0)
      return Status::Errno("symlink " + dst);
    return Status::Ok();
  }
  if (S_ISREG(st.st_mode)) return CopyRegular(host_path, dst, st.st_mode);
  return Status::Ok();  // devices, fifos, sockets: not part of an image
}

}  // namespace

std::vector<RootfsRecipe> RuntimeRecipes(const std::string& clients) {
  std::vector<std::string> base = {"libc6", "libgcc-s1", "libstdc++6", "dash", "bash", "coreutils", "ca-certificates"};
  std::vector<std::string> stops(std::begin(kStopPackages), std::end(kStopPackages));
  std::vector<std::pair<std::string, std::string>> extras;
  // Generated by update-ca-certificates from the ca-certificates package, so not in its file list.
  const char* bundle = "/etc/ssl/certs/ca-certificates.crt";
  if (access(bundle, R_OK) == 0) extras.push_back({bundle, bundle});

  RootfsRecipe provided{"provided", base, stops, extras};
  RootfsRecipe python{"python", base, stops, extras};
  // Lambda's python runtimes ship the AWS SDK: `import boto3` works without bundling it.
  python.packages.insert(python.packages.end(), {"python3-minimal", "libpython3-stdlib", "python3-boto3"});
  python.extra_files.push_back({clients + "/python/bootstrap.py", "/var/runtime/bootstrap.py"});
  python.compile_python = true;
  RootfsRecipe node{"node", base, stops, extras};
  node.packages.push_back("nodejs");
  node.stop_packages.push_back("python3");  // for node-gyp builds only
  node.extra_files.push_back({clients + "/node/bootstrap.js", "/var/runtime/bootstrap.js"});
  return {provided, python, node};
}

Result<ResolvedRecipe> ResolveRecipe(const RootfsRecipe& recipe) {
  std::map<std::string, InstalledPackage> installed;
  std::map<std::string, std::string> provider;
  if (Status s = ReadDpkgDatabase(&installed, &provider); !s.ok()) return s;
  auto resolve = [&](const std::string& name) -> std::string {
    if (installed.count(name)) return name;
    auto it = provider.find(name);
    return it == provider.end() ? "" : it->second;
  };
  std::set<std::string> stops(recipe.stop_packages.begin(), recipe.stop_packages.end());
  std::set<std::string> chosen;
  std::deque<std::string> queue;
  for (const std::string& root : recipe.packages) {
    std::string p = resolve(root);
    if (p.empty()) return Status::Error("runtime image " + recipe.name + ": package " + root + " is not installed");
    queue.push_back(p);
  }
  while (!queue.empty()) {
    std::string p = queue.front();
    queue.pop_front();
    if (stops.count(p) || !chosen.insert(p).second) continue;
    for (const auto& alts : installed[p].depends) {
      for (const std::string& alt : alts) {
        std::string dep = resolve(alt);
        if (dep.empty()) continue;  // try the next alternative
        queue.push_back(dep);
        break;
      }
    }
  }
  ResolvedRecipe r;
  std::string keyed = std::string(kBuilderVersion) + "\n" + recipe.name + "\n";
  for (const std::string& p : chosen) {
    r.packages.push_back({p, installed[p].version});
    keyed += p + "=" + installed[p].version + "\n";
  }
  for (const std::string& s : stops) keyed += "stop " + s + "\n";
  if (recipe.compile_python) keyed += "compile python\n";
  for (const char* prefix : kExcludedPrefixes) keyed += "exclude " + std::string(prefix) + "\n";
  for (const auto& [host, tree] : recipe.extra_files) {
    std::string data;
    if (Status s = ReadFile(host, &data); !s.ok())
      return Status::Error("runtime image " + recipe.name + ": " + s.message());
    keyed += "file " + tree + " " + HexEncode(Sha256(data)) + "\n";
  }
  r.key = HexEncode(Sha256(keyed));
  return r;
}

Status StageRootfs(const RootfsRecipe& recipe, const ResolvedRecipe& resolved, const std::string& dir) {
  if (mkdir(dir.c_str(), 0755) != 0) return Status::Errno("mkdir " + dir);
  std::vector<std::string> argv = {"dpkg-query", "-L"};
  for (const auto& [name, version] : resolved.packages) argv.push_back(name);
  auto listing = RunCommand(argv);
  if (!listing.ok()) return listing.status();
  std::set<std::string> paths;  // sorted: parents before children
  for (const std::string& line : Split(*listing, '\n'))
    if (!line.empty() && line[0] == '/' && line != "/." && !Excluded(line)) paths.insert(line);
  for (const std::string& p : paths)
    if (Status s = CopyPath(p, p, dir); !s.ok()) return s;
  for (const auto& [host, tree] : recipe.extra_files) {
    struct stat st;
    if (stat(host.c_str(), &st) != 0) return Status::Errno("runtime image " + recipe.name + ": " + host);
    if (Status s = MakeDirs(dir + Dirname(tree), 0755); !s.ok()) return s;
    if (Status s = CopyRegular(host, dir + tree, st.st_mode | 0444); !s.ok()) return s;
  }
  // Debian compiles python modules at install time (py3compile), so dpkg lists no .pyc files: an
  // image without them would compile every module on every start, in memory (the image is
  // read-only), which makes a python start 2-3x slower. Compile them here, as unchecked-hash pycs
  // (PEP 552: valid without comparing the source's mtime, which the image sets to 0).
  if (recipe.compile_python) {
    std::vector<std::string> argv = {"python3", "-m", "compileall", "-q", "-j", "0", "--invalidation-mode",
                                     "unchecked-hash", "-s", dir, "-p", "/"};
    size_t fixed = argv.size();
    for (const char* sub : {"/usr/lib/python3", "/usr/lib/python3.9", "/usr/lib/python3.10", "/usr/lib/python3.11",
                            "/usr/lib/python3.12", "/usr/lib/python3.13"}) {
      struct stat st;
      if (stat((dir + sub).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) argv.push_back(dir + sub);
    }
    // A module that does not compile (compileall then exits 1) is left to compile at import, as
    // py3compile leaves it; every other module gets its .pyc.
    if (argv.size() > fixed) (void)RunCommand(argv);
  }
  for (const char* name : kTopLinks) {
    std::string host = std::string("/") + name;
    char target[PATH_MAX];
    ssize_t n = readlink(host.c_str(), target, sizeof target - 1);
    if (n <= 0) continue;
    std::string t(target, static_cast<size_t>(n));
    struct stat st;
    if (stat((dir + "/" + t).c_str(), &st) != 0) continue;  // nothing of it in this tree
    if (symlink(t.c_str(), (dir + host).c_str()) != 0 && errno != EEXIST) return Status::Errno("symlink " + host);
  }
  return Status::Ok();
}

}  // namespace kindling::images
