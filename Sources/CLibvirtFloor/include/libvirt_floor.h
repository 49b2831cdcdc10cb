#ifndef VIRTMETER_LIBVIRT_FLOOR_H
#define VIRTMETER_LIBVIRT_FLOOR_H
#include <libvirt/libvirt.h>

/* The benchmark's floor: one poll cycle's libvirt calls made bare, as the inspector makes them (bulk stats, then
 * per-domain calls for the groups the driver left out), with no snapshots or samples built. Returns the number of
 * domains read, or -1 when the bulk call fails. `checksum` receives a sum of the values read, so no call is
 * optimised away. */
int virtmeter_floor_cycle(virConnectPtr conn, const char *const *disks, int ndisks,
                          const char *const *interfaces, int ninterfaces, unsigned long long *checksum);

#endif
