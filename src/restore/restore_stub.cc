#include "restore/restore.h"
namespace cryo {
Result<pid_t> Restore(const RestoreOptions&) { return Status::Error("restore is not implemented yet"); }
}
