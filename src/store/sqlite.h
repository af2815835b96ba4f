// Small RAII helpers over the SQLite C API, shared by Kindling's embedded databases
// (metadata.db, events.db). Errors become Status values; nothing throws.
#pragma once

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "common/status.h"

namespace kindling::sqlite {

// "sqlite <what>: <SQLite's message>".
inline Status Error(sqlite3* db, const std::string& what) {
  return Status::Error("sqlite " + what + ": " + sqlite3_errmsg(db));
}

// Runs SQL that returns no rows.
inline Status Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    Status s = Status::Error(std::string("sqlite: ") + (err ? err : "error") + " in " + sql);
    sqlite3_free(err);
    return s;
  }
  return Status::Ok();
}

// Opens (creating) a database that only its owner may read or write: the file is made 0600
// before SQLite opens it, and SQLite gives its -wal and -shm files the database file's mode.
// Sets a 5 s busy timeout. The caller owns the handle (sqlite3_close).
inline Result<sqlite3*> OpenPrivate(const std::string& path, int extra_flags = 0) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Status::Errno("open " + path);
  fchmod(fd, 0600);
  close(fd);
  for (const char* suffix : {"-wal", "-shm"}) chmod((path + suffix).c_str(), 0600);
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | extra_flags, nullptr) !=
      SQLITE_OK) {
    Status s = Status::Error("sqlite open " + path + ": " + (db ? sqlite3_errmsg(db) : "no memory"));
    sqlite3_close(db);
    return s;
  }
  sqlite3_busy_timeout(db, 5000);
  return db;
}

// A prepared statement; ok() is false when the SQL did not compile.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) stmt_ = nullptr;
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  bool ok() const { return stmt_ != nullptr; }
  void Bind(int i, const std::string& s) {
    sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  }
  void BindBlob(int i, const std::string& s) {
    sqlite3_bind_blob(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void Bind(int i, int v) { sqlite3_bind_int64(stmt_, i, v); }
  int Step() { return sqlite3_step(stmt_); }
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  // A column's bytes (text or blob), "" for NULL.
  std::string Text(int col) {
    const void* p = sqlite3_column_blob(stmt_, col);
    return p ? std::string(static_cast<const char*>(p), sqlite3_column_bytes(stmt_, col)) : "";
  }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }
  bool Null(int col) { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

}  // namespace kindling::sqlite
