// ImagePublisher: the control plane's side of images. Turns a directory tree (an unpacked code
// package, a runtime root file system) into an erofs image, splits it into chunks and stores the
// chunks and the manifest on the chunk server under a name; workers mount images by that name.
//
// Image names:
//   code/<code sha256 hex>                 a function's code package, unpacked (/var/task)
//   runtime/<family>/<recipe key hex>      a runtime root file system (see package_rootfs.h)
//
// Thread safety: thread-safe; every method blocks (disk, mkfs.erofs, network).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "chunks/chunk_client.h"
#include "chunks/manifest.h"

namespace kindling::images {

std::string CodeImageName(const std::string& code_digest_hex);

class ImagePublisher {
 public:
  // work_dir: scratch space for images being built; runtime_clients_dir: see RuntimeRecipes.
  ImagePublisher(std::string work_dir, std::shared_ptr<chunks::ChunkClient> remote,
                 std::string runtime_clients_dir);

  // Builds the image of dir and stores it under name (replacing what was stored under it).
  // Chunks the server already has are not sent again.
  Result<chunks::Manifest> PublishTree(const std::string& dir, const std::string& name);
  Status Unpublish(const std::string& name);

  // The name of the runtime image of family ("provided", "python", "node"), built from the host's
  // packages and published first if the chunk server does not have it yet.
  Result<std::string> RuntimeImage(const std::string& family);

  // Stores the image under name again with a start layout (start_layout.h): the blocks its first
  // recorded start read (first_read_blocks, in order) first, and a start recording naming the
  // chunks that hold them. Skipped for an image that has a layout already. Workers that mount the
  // name afterwards get the laid-out image. Blocking (reads the whole image).
  Status LayOutForStart(const std::string& name, const std::vector<uint32_t>& first_read_blocks);
  // The same on a background thread of the publisher (joined by its destructor).
  void LayOutForStartLater(std::string name, std::vector<uint32_t> first_read_blocks);
  ~ImagePublisher();

 private:
  std::string work_dir_;
  std::shared_ptr<chunks::ChunkClient> remote_;
  std::string clients_dir_;
  std::mutex mu_;                               // one runtime build at a time
  std::map<std::string, std::string> runtime_names_;  // family -> published name
  std::mutex layout_mu_;                        // one layout at a time
  std::mutex threads_mu_;
  std::vector<std::jthread> layouts_;           // LayOutForStartLater's threads
};

}  // namespace kindling::images
