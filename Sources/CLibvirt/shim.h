#ifndef VIRTMETER_CLIBVIRT_SHIM_H
#define VIRTMETER_CLIBVIRT_SHIM_H
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#endif
