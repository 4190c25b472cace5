// The restorer blob embedded in cryo (see restorer.cc).
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" const uint8_t cryo_restorer_blob[];
extern "C" const uint8_t cryo_restorer_blob_end[];

namespace cryo::restorer {
inline const uint8_t* BlobData() { return cryo_restorer_blob; }
inline size_t BlobSize() { return static_cast<size_t>(cryo_restorer_blob_end - cryo_restorer_blob); }
}  // namespace cryo::restorer
