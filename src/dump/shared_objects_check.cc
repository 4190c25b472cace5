#include "dump/shared_objects_check.h"

#include <set>

#include "files/pipe_table.h"
#include "files/unlinked_dump.h"
#include "mem/shm_dump.h"

namespace cryo {

Status CheckSharedObjects(SeizedTree& tree, std::vector<ProcessFacts>& facts, InFlightFiles& in_flight) {
  std::set<pid_t> pids;  // zombies hold nothing, but they are of the tree
  for (const auto& sp : tree.processes()) pids.insert(sp->pid());
  for (const ZombieInfo& z : tree.zombies()) pids.insert(z.pid);
  std::vector<ProcessFds> tables;
  std::vector<ShmHolders> shm;
  // Only the other name of a deleted executable is written to these (the
  // dump finds it again for the records).
  std::vector<image::ProcessCore> scratch(facts.size());
  std::vector<UnlinkedHolders> unlinked;
  for (size_t i = 0; i < facts.size(); ++i) {
    const pid_t pid = tree.processes()[i]->pid();
    ProcessFacts& f = facts[i];
    tables.push_back({pid, &f.fds});
    shm.push_back({pid, &f.mm, &f.fds, &f.shm_maps});
    unlinked.push_back({pid, &scratch[i], &f.mm, &f.fds, &f.unlinked_maps});
  }
  // A pipe or memfd may be held only in flight (by cryo since the peek).
  image::Mm no_mm;
  const std::vector<ShmMapping> no_maps;
  if (!in_flight.empty()) {
    tables.push_back({in_flight.pid(), in_flight.table()});
    shm.push_back({in_flight.pid(), &no_mm, in_flight.table(), &no_maps});
  }
  CRYO_RETURN_IF_ERROR(CheckPipesHeldOutside(tables, pids).Prefixed("pipes"));
  CRYO_RETURN_IF_ERROR(CheckShmObjects(shm, pids).Prefixed("shared memory"));
  return CheckUnlinkedFiles(unlinked, pids).Prefixed("unlinked files");
}

}  // namespace cryo
