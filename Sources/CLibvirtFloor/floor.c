#include "libvirt_floor.h"
#include <string.h>

static int has_prefix(virTypedParameterPtr params, int n, const char *prefix) {
    size_t len = strlen(prefix);
    for (int i = 0; i < n; i++)
        if (strncmp(params[i].field, prefix, len) == 0) return 1;
    return 0;
}

int virtmeter_floor_cycle(virConnectPtr conn, const char *const *disks, int ndisks,
                          const char *const *interfaces, int ninterfaces, unsigned long long *checksum) {
    unsigned int groups = VIR_DOMAIN_STATS_STATE | VIR_DOMAIN_STATS_CPU_TOTAL | VIR_DOMAIN_STATS_BALLOON |
                          VIR_DOMAIN_STATS_VCPU | VIR_DOMAIN_STATS_INTERFACE | VIR_DOMAIN_STATS_BLOCK;
    virDomainStatsRecordPtr *records = NULL;
    int count = virConnectGetAllDomainStats(conn, groups, &records, VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE |
                                                                 VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT);
    if (count < 0) return -1;
    unsigned long long sum = 0;
    for (int r = 0; r < count; r++) {
        virDomainPtr dom = records[r]->dom;
        virTypedParameterPtr params = records[r]->params;
        int n = records[r]->nparams;
        char uuid[VIR_UUID_STRING_BUFLEN];
        virDomainGetUUIDString(dom, uuid);
        sum += (unsigned char)uuid[0] + strlen(virDomainGetName(dom)) + virDomainGetID(dom);
        for (int i = 0; i < n; i++)
            if (params[i].type == VIR_TYPED_PARAM_ULLONG) sum += params[i].value.ul;
        if (!has_prefix(params, n, "cpu.time") || !has_prefix(params, n, "vcpu.current") ||
            !has_prefix(params, n, "balloon.maximum")) {
            virDomainInfo info;
            if (virDomainGetInfo(dom, &info) == 0) sum += info.cpuTime + info.memory;
        }
        if (!has_prefix(params, n, "balloon.current")) {
            virDomainMemoryStatStruct stats[VIR_DOMAIN_MEMORY_STAT_NR];
            int k = virDomainMemoryStats(dom, stats, VIR_DOMAIN_MEMORY_STAT_NR, 0);
            for (int i = 0; i < k; i++) sum += stats[i].val;
        }
        if (!has_prefix(params, n, "block.")) {
            for (int d = 0; d < ndisks; d++) {
                virDomainBlockStatsStruct bs;
                virDomainBlockInfo bi;
                if (virDomainBlockStats(dom, disks[d], &bs, sizeof bs) == 0) sum += bs.rd_bytes + bs.wr_bytes;
                if (virDomainGetBlockInfo(dom, disks[d], &bi, 0) == 0) sum += bi.capacity;
            }
        }
        if (!has_prefix(params, n, "net.")) {
            for (int i = 0; i < ninterfaces; i++) {
                virDomainInterfaceStatsStruct is;
                if (virDomainInterfaceStats(dom, interfaces[i], &is, sizeof is) == 0) sum += is.rx_bytes + is.tx_bytes;
            }
        }
    }
    virDomainStatsRecordListFree(records);
    *checksum = sum;
    return count;
}
