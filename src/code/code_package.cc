#include "code/code_package.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "common/files.h"
#include "common/ids.h"

namespace kindling {
namespace {

struct ZipCloser {
  void operator()(zip_t* z) const { zip_discard(z); }
};

// Splits an entry name into components; rejects absolute paths, `..`, NUL and backslashes.
bool SplitEntryName(const std::string& name, std::vector<std::string>* parts) {
  parts->clear();
  if (name.empty() || name[0] == '/' || name.find('\0') != std::string::npos ||
      name.find('\\') != std::string::npos)
    return false;
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    std::string part = name.substr(start, end - start);
    if (part == "..") return false;
    if (!part.empty() && part != ".") parts->push_back(part);
    start = end + 1;
  }
  return true;
}

// True when a symlink at `link_parts` with `target` resolves (textually) inside the package.
bool SymlinkStaysInside(const std::vector<std::string>& link_parts, const std::string& target) {
  if (target.empty() || target[0] == '/' || target.find('\0') != std::string::npos) return false;
  std::vector<std::string> stack(link_parts.begin(), link_parts.end() - 1);
  size_t start = 0;
  while (start <= target.size()) {
    size_t end = target.find('/', start);
    if (end == std::string::npos) end = target.size();
    std::string part = target.substr(start, end - start);
    if (part == "..") {
      if (stack.empty()) return false;
      stack.pop_back();
    } else if (!part.empty() && part != ".") {
      stack.push_back(part);
    }
    start = end + 1;
  }
  return true;
}

// Opens (creating) the directory chain parts[0..n) under root_fd without following symlinks.
int OpenDirChain(int root_fd, const std::vector<std::string>& parts, size_t n) {
  int fd = dup(root_fd);
  for (size_t i = 0; i < n && fd >= 0; ++i) {
    if (mkdirat(fd, parts[i].c_str(), 0755) != 0 && errno != EEXIST) {
      close(fd);
      return -1;
    }
    int next = openat(fd, parts[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    close(fd);
    fd = next;
  }
  return fd;
}

Status Extract(zip_t* za, const std::string& dir, const CodeLimits& limits) {
  zip_int64_t count = zip_get_num_entries(za, 0);
  if (count < 0) return Status::Error("Could not read the zip file's entries.");
  if (static_cast<uint64_t>(count) > limits.max_entries)
    return Status::Error("The zip file has more than " + std::to_string(limits.max_entries) +
                         " entries.");
  int root_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) return Status::Errno("open " + dir);
  std::unique_ptr<int, void (*)(int*)> root_guard(&root_fd, [](int* fd) { close(*fd); });

  struct Link {
    std::vector<std::string> parts;
    std::string target;
  };
  std::vector<Link> links;  // created last, so no entry is written through a link
  uint64_t total = 0;
  std::vector<char> buf(1 << 16);
  std::vector<std::string> parts;
  for (zip_int64_t i = 0; i < count; ++i) {
    zip_stat_t st;
    if (zip_stat_index(za, i, 0, &st) != 0 || !(st.valid & ZIP_STAT_NAME))
      return Status::Error("The zip file has an unreadable entry.");
    std::string name = st.name;
    if (!SplitEntryName(name, &parts))
      return Status::Error("The zip entry '" + name + "' has an absolute or '..' path.");
    if (parts.empty()) continue;
    zip_uint8_t opsys = 0;
    zip_uint32_t attr = 0;
    zip_file_get_external_attributes(za, i, 0, &opsys, &attr);
    mode_t mode = opsys == ZIP_OPSYS_UNIX ? static_cast<mode_t>(attr >> 16) : 0;
    bool is_dir = name.back() == '/' || S_ISDIR(mode);
    bool is_link = S_ISLNK(mode);
    if (is_dir) {
      int fd = OpenDirChain(root_fd, parts, parts.size());
      if (fd < 0) return Status::Error("The zip entry '" + name + "' conflicts with another entry.");
      close(fd);
      continue;
    }
    zip_file_t* zf = zip_fopen_index(za, i, 0);
    if (!zf) return Status::Error("The zip entry '" + name + "' could not be read: " +
                                  zip_error_strerror(zip_get_error(za)));
    std::string link_target;
    int out = -1;
    if (!is_link) {
      int dfd = OpenDirChain(root_fd, parts, parts.size() - 1);
      if (dfd >= 0) {
        out = openat(dfd, parts.back().c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     (mode & 0111) ? 0755 : 0644);
        close(dfd);
      }
      if (out < 0) {
        zip_fclose(zf);
        return Status::Error("The zip entry '" + name + "' is a duplicate or conflicts with another entry.");
      }
    }
    Status s;
    for (;;) {
      zip_int64_t n = zip_fread(zf, buf.data(), buf.size());
      if (n < 0) {
        s = Status::Error("The zip entry '" + name + "' is corrupt: " +
                          zip_error_strerror(zip_file_get_error(zf)));
        break;
      }
      if (n == 0) break;
      total += static_cast<uint64_t>(n);
      if (total > limits.max_unzipped_bytes) {
        s = Status::Error("Unzipped size must be smaller than " +
                          std::to_string(limits.max_unzipped_bytes) + " bytes");
        break;
      }
      if (is_link) {
        link_target.append(buf.data(), static_cast<size_t>(n));
        if (link_target.size() > limits.max_symlink_target) {
          s = Status::Error("The zip entry '" + name + "' is a symlink with an oversized target.");
          break;
        }
      } else if (write(out, buf.data(), static_cast<size_t>(n)) != n) {
        s = Status::Errno("write " + name);
        break;
      }
    }
    zip_fclose(zf);
    if (out >= 0) close(out);
    if (!s.ok()) return s;
    if (is_link) {
      if (!SymlinkStaysInside(parts, link_target))
        return Status::Error("The zip entry '" + name + "' is a symlink pointing outside the package.");
      links.push_back({parts, link_target});
    }
  }
  for (const Link& link : links) {
    int dfd = OpenDirChain(root_fd, link.parts, link.parts.size() - 1);
    bool ok = dfd >= 0 && symlinkat(link.target.c_str(), dfd, link.parts.back().c_str()) == 0;
    if (dfd >= 0) close(dfd);
    if (!ok) return Status::Error("The zip symlink '" + link.parts.back() + "' conflicts with another entry.");
  }
  return Status::Ok();
}

}  // namespace

Result<CodePackage> ExtractCodePackage(const std::string& zip, const std::string& code_root,
                                       const CodeLimits& limits) {
  CodePackage pkg;
  std::string digest = Sha256(zip);
  pkg.sha256_base64 = Base64Encode(digest);
  pkg.digest_hex = HexEncode(digest);
  pkg.zip_size = static_cast<int64_t>(zip.size());
  pkg.dir = code_root + "/" + pkg.digest_hex;

  struct stat st;
  if (stat(pkg.dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return pkg;  // already extracted

  zip_error_t zerr;
  zip_error_init(&zerr);
  zip_source_t* src = zip_source_buffer_create(zip.data(), zip.size(), 0, &zerr);
  if (!src) return Status::Error("Could not unzip uploaded file.");
  zip_t* raw = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
  if (!raw) {
    zip_source_free(src);
    std::string why = zip_error_strerror(&zerr);
    zip_error_fini(&zerr);
    return Status::Error("Could not unzip uploaded file. Please check your file, then try to upload again. (" + why + ")");
  }
  std::unique_ptr<zip_t, ZipCloser> za(raw);

  Status s = MakeDirs(code_root, 0755);
  if (!s.ok()) return s;
  std::string tmp = code_root + "/.tmp-" + NewRequestId();
  if (mkdir(tmp.c_str(), 0755) != 0) return Status::Errno("mkdir " + tmp);
  s = Extract(za.get(), tmp, limits);
  if (s.ok()) s = WriteFile(tmp + ".zip", zip);
  if (s.ok() && rename((tmp + ".zip").c_str(), (pkg.dir + ".zip").c_str()) != 0)
    s = Status::Errno("rename " + tmp + ".zip");
  if (s.ok() && rename(tmp.c_str(), pkg.dir.c_str()) != 0 && errno != EEXIST && errno != ENOTEMPTY)
    s = Status::Errno("rename " + tmp);
  RemoveTree(tmp);  // no-op after a successful rename
  unlink((tmp + ".zip").c_str());
  if (!s.ok()) return s;
  return pkg;
}

Status RemoveUnusedPackages(const std::string& code_root, const std::vector<std::string>& in_use) {
  DIR* dir = opendir(code_root.c_str());
  if (!dir) return errno == ENOENT ? Status::Ok() : Status::Errno("opendir " + code_root);
  std::vector<std::string> doomed;
  while (struct dirent* e = readdir(dir)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    std::string digest = name.size() > 4 && name.compare(name.size() - 4, 4, ".zip") == 0
                             ? name.substr(0, name.size() - 4)
                             : name;
    if (std::find(in_use.begin(), in_use.end(), digest) == in_use.end()) doomed.push_back(name);
  }
  closedir(dir);
  Status result;
  for (const std::string& name : doomed) {
    Status s = RemoveTree(code_root + "/" + name);
    if (!s.ok() && result.ok()) result = s;
  }
  return result;
}

bool PackageHasExecutable(const std::string& dir, const std::string& path) {
  struct stat st;
  std::string full = dir + "/" + path;
  return stat(full.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111);
}

}  // namespace kindling
