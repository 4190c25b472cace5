// `cryo compare-pages A B`: a verification aid for incremental dumps. Every
// page either image stores for a process (in its own page file or, for an
// incremental image, in its chain's) must be stored by the other at the same
// address with the same bytes; the tests compare a full dump with an
// incremental one taken at the same moment.
#pragma once

#include <string>

#include "base/status.h"

namespace cryo::image {

// OK with a summary ("N processes, P pages identical"); an error naming the
// first pid and address that differ.
Result<std::string> ComparePages(const std::string& a, const std::string& b);

}  // namespace cryo::image
