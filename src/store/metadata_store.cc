#include "store/metadata_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/function_json.h"

namespace kindling {
namespace {

Status SqlError(sqlite3* db, const std::string& what) {
  return Status::Error("sqlite " + what + ": " + sqlite3_errmsg(db));
}

// RAII prepared statement.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) stmt_ = nullptr;
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  bool ok() const { return stmt_ != nullptr; }
  void Bind(int i, const std::string& s) {
    sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  }
  void Bind(int i, int v) { sqlite3_bind_int(stmt_, i, v); }
  int Step() { return sqlite3_step(stmt_); }
  std::string Text(int col) {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(stmt_, col)) : "";
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

Result<FunctionConfig> Decode(const std::string& text) {
  auto doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  FunctionConfig fn;
  if (doc.is_discarded() || !FromStored(doc, &fn)) return Status::Error("corrupt function record");
  return fn;
}

}  // namespace

Result<std::unique_ptr<MetadataStore>> MetadataStore::Open(const std::string& path) {
  // Function configurations hold secrets (environment variables): owner-only. SQLite gives its
  // -wal and -shm files the database file's mode.
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Status::Errno("open " + path);
  fchmod(fd, 0600);
  close(fd);
  for (const char* suffix : {"-wal", "-shm"}) chmod((path + suffix).c_str(), 0600);
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    Status s = Status::Error("sqlite open " + path + ": " + (db ? sqlite3_errmsg(db) : "no memory"));
    sqlite3_close(db);
    return s;
  }
  std::unique_ptr<MetadataStore> store(new MetadataStore(db));
  sqlite3_busy_timeout(db, 5000);
  for (const char* sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL",
                          "CREATE TABLE IF NOT EXISTS functions ("
                          " name TEXT NOT NULL, version TEXT NOT NULL, doc TEXT NOT NULL,"
                          " PRIMARY KEY (name, version))"}) {
    Status s = store->Exec(sql);
    if (!s.ok()) return s;
  }
  return store;
}

MetadataStore::~MetadataStore() { sqlite3_close(db_); }

Status MetadataStore::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    Status s = Status::Error(std::string("sqlite: ") + (err ? err : "error") + " in " + sql);
    sqlite3_free(err);
    return s;
  }
  return Status::Ok();
}

Status MetadataStore::Put(const FunctionConfig& fn) {
  Stmt st(db_, "INSERT OR REPLACE INTO functions (name, version, doc) VALUES (?, ?, ?)");
  if (!st.ok()) return SqlError(db_, "prepare");
  st.Bind(1, fn.name);
  st.Bind(2, fn.version);
  st.Bind(3, ToStored(fn).dump());
  if (st.Step() != SQLITE_DONE) return SqlError(db_, "put");
  return Status::Ok();
}

Result<bool> MetadataStore::Insert(const FunctionConfig& fn) {
  Stmt st(db_, "INSERT OR IGNORE INTO functions (name, version, doc) VALUES (?, ?, ?)");
  if (!st.ok()) return SqlError(db_, "prepare");
  st.Bind(1, fn.name);
  st.Bind(2, fn.version);
  st.Bind(3, ToStored(fn).dump());
  if (st.Step() != SQLITE_DONE) return SqlError(db_, "insert");
  return sqlite3_changes(db_) == 1;
}

Result<std::optional<FunctionConfig>> MetadataStore::Get(const std::string& name,
                                                         const std::string& version) {
  Stmt st(db_, "SELECT doc FROM functions WHERE name = ? AND version = ?");
  if (!st.ok()) return SqlError(db_, "prepare");
  st.Bind(1, name);
  st.Bind(2, version);
  int rc = st.Step();
  if (rc == SQLITE_DONE) return std::optional<FunctionConfig>();
  if (rc != SQLITE_ROW) return SqlError(db_, "get");
  auto fn = Decode(st.Text(0));
  if (!fn.ok()) return fn.status();
  return std::optional<FunctionConfig>(std::move(fn).value());
}

Result<int> MetadataStore::DeleteFunction(const std::string& name) {
  Stmt st(db_, "DELETE FROM functions WHERE name = ?");
  if (!st.ok()) return SqlError(db_, "prepare");
  st.Bind(1, name);
  if (st.Step() != SQLITE_DONE) return SqlError(db_, "delete");
  return sqlite3_changes(db_);
}

Result<std::vector<FunctionConfig>> MetadataStore::List(const std::string& version,
                                                        const std::string& after_name, int limit) {
  Stmt st(db_, "SELECT doc FROM functions WHERE version = ? AND name > ? ORDER BY name LIMIT ?");
  if (!st.ok()) return SqlError(db_, "prepare");
  st.Bind(1, version);
  st.Bind(2, after_name);
  st.Bind(3, limit);
  std::vector<FunctionConfig> out;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    auto fn = Decode(st.Text(0));
    if (!fn.ok()) return fn.status();
    out.push_back(std::move(fn).value());
  }
  if (rc != SQLITE_DONE) return SqlError(db_, "list");
  return out;
}

Result<std::vector<std::string>> MetadataStore::CodeDigestsInUse() {
  Stmt st(db_, "SELECT DISTINCT json_extract(doc, '$.CodeDigest') FROM functions");
  if (!st.ok()) return SqlError(db_, "prepare");
  std::vector<std::string> out;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) out.push_back(st.Text(0));
  if (rc != SQLITE_DONE) return SqlError(db_, "digests");
  return out;
}

}  // namespace kindling
