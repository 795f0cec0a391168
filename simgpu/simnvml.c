/*
 * simnvml.c: libnvidia-ml.so.1 of the simulated GPU: the few NVML calls CUDA programs make beside the
 * driver (PyTorch asks NVML for the device behind a PCI bus ID before it maps expandable segments, and
 * for the processes using a device when it words an out-of-memory error). Every real driver install
 * has NVML; without one, PyTorch calls a null pointer.
 *
 * Answers from the same environment as libcuda.so.1 (SIMCUDA_DEVICES) and, for memory, from the
 * simulated driver's own accounting in this process (its probe functions, found with dlsym). What is
 * not simulated answers NVML_ERROR_NOT_SUPPORTED, as NVML does on boards without the feature.
 * Runs on application threads; no state beyond constants.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NVML_SUCCESS 0
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_NOT_FOUND 6

#define MAX_DEVICES 8
struct nvml_device {
    unsigned int index;
};
static struct nvml_device devices[MAX_DEVICES] = {{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}};
typedef struct nvml_device *nvmlDevice_t;

/* nvmlProcessInfo_t (v2 and v3 share this layout). */
struct nvml_process {
    unsigned int pid;
    unsigned long long used_gpu_memory;
    unsigned int gpu_instance_id, compute_instance_id;
};

struct nvml_memory {
    unsigned long long total, free, used;
};

static unsigned int device_count(void)
{
    const char *env = getenv("SIMCUDA_DEVICES");
    int n = env && *env ? atoi(env) : 1;
    return n < 1 || n > MAX_DEVICES ? 1 : (unsigned)n;
}

int nvmlInit_v2(void) { return NVML_SUCCESS; }
int nvmlInit(void) { return NVML_SUCCESS; }
int nvmlInitWithFlags(unsigned int flags) { return NVML_SUCCESS; }
int nvmlShutdown(void) { return NVML_SUCCESS; }

const char *nvmlErrorString(int result)
{
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    default: return "Unknown Error";
    }
}

int nvmlSystemGetCudaDriverVersion_v2(int *version)
{
    if (!version)
        return NVML_ERROR_INVALID_ARGUMENT;
    *version = 13000;
    return NVML_SUCCESS;
}

int nvmlSystemGetCudaDriverVersion(int *version)
{
    return nvmlSystemGetCudaDriverVersion_v2(version);
}

int nvmlDeviceGetCount_v2(unsigned int *count)
{
    if (!count)
        return NVML_ERROR_INVALID_ARGUMENT;
    *count = device_count();
    return NVML_SUCCESS;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    if (!device || index >= device_count())
        return NVML_ERROR_INVALID_ARGUMENT;
    *device = &devices[index];
    return NVML_SUCCESS;
}

/* The simulated driver's bus IDs: "00000000:BB:00.0" with BB = 0x18 + ordinal. */
int nvmlDeviceGetHandleByPciBusId_v2(const char *bus_id, nvmlDevice_t *device)
{
    unsigned int domain, bus, dev, fn;
    if (!bus_id || !device || sscanf(bus_id, "%x:%x:%x.%x", &domain, &bus, &dev, &fn) != 4)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (domain != 0 || dev != 0 || bus < 0x18 || bus - 0x18 >= device_count())
        return NVML_ERROR_NOT_FOUND;
    *device = &devices[bus - 0x18];
    return NVML_SUCCESS;
}

int nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index)
{
    if (!device || !index)
        return NVML_ERROR_INVALID_ARGUMENT;
    *index = device->index;
    return NVML_SUCCESS;
}

/* The simulated driver's accounting of DEVICE in this process, if it is loaded and initialised. */
static int driver_memory(unsigned int device, unsigned long long *used, unsigned long long *total)
{
    size_t (*used_fn)(int) = (size_t (*)(int))dlsym(RTLD_DEFAULT, "simcuda_used_bytes");
    size_t (*cap_fn)(int) = (size_t (*)(int))dlsym(RTLD_DEFAULT, "simcuda_capacity");
    if (!used_fn || !cap_fn || cap_fn((int)device) == 0)
        return -1;
    *used = used_fn((int)device);
    *total = cap_fn((int)device);
    return 0;
}

int nvmlDeviceGetMemoryInfo(nvmlDevice_t device, struct nvml_memory *memory)
{
    if (!device || !memory)
        return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long used, total;
    if (driver_memory(device->index, &used, &total) != 0)
        return NVML_ERROR_NOT_SUPPORTED;
    *memory = (struct nvml_memory){total, total - used, used};
    return NVML_SUCCESS;
}

/* The processes using the device: this one, with what it holds, and the simulated other process
 * (SIMCUDA_OTHER_PROCESS, pid SIM_OTHER_PID) once it has arrived. */
#define SIM_OTHER_PID 999999u
int nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t device, unsigned int *count, struct nvml_process *infos)
{
    if (!device || !count)
        return NVML_ERROR_INVALID_ARGUMENT;
    unsigned long long used, total;
    if (driver_memory(device->index, &used, &total) != 0) {
        *count = 0;
        return NVML_SUCCESS;
    }
    size_t (*other_fn)(int) = (size_t (*)(int))dlsym(RTLD_DEFAULT, "simcuda_other_process_bytes");
    unsigned long long other = other_fn ? other_fn((int)device->index) : 0, mine = used - other;
    unsigned int n = (mine > 0) + (other > 0);
    if (*count < n || (n && !infos)) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    *count = 0;
    if (mine)
        infos[(*count)++] = (struct nvml_process){(unsigned int)getpid(), mine, 0xFFFFFFFFu, 0xFFFFFFFFu};
    if (other)
        infos[(*count)++] = (struct nvml_process){SIM_OTHER_PID, other, 0xFFFFFFFFu, 0xFFFFFFFFu};
    return NVML_SUCCESS;
}

/* The simulated driver's UUIDs: "GPU-73696d63-7564-612d-4000-0000000000NN", NN the ordinal (simcuda.c). */
int nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device)
{
    static const char prefix[] = "GPU-73696d63-7564-612d-4000-0000000000";
    if (!uuid || !device)
        return NVML_ERROR_INVALID_ARGUMENT;
    unsigned int n = 0;
    if (strncmp(uuid, prefix, sizeof prefix - 1) || sscanf(uuid + sizeof prefix - 1, "%2x", &n) != 1 ||
        n >= device_count())
        return NVML_ERROR_NOT_FOUND;
    *device = &devices[n];
    return NVML_SUCCESS;
}

int nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *count, struct nvml_process *infos)
{
    return nvmlDeviceGetComputeRunningProcesses(device, count, infos);
}

int nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t device, unsigned int *count, struct nvml_process *infos)
{
    return nvmlDeviceGetComputeRunningProcesses(device, count, infos);
}

/* No NVLink fabric, no NVLink peers on the simulated GPU. */
int nvmlDeviceGetGpuFabricInfoV(nvmlDevice_t device, void *info)
{
    return NVML_ERROR_NOT_SUPPORTED;
}

int nvmlDeviceGetGpuFabricInfo(nvmlDevice_t device, void *info)
{
    return NVML_ERROR_NOT_SUPPORTED;
}

int nvmlDeviceGetNvLinkRemoteDeviceType(nvmlDevice_t device, unsigned int link, int *type)
{
    return NVML_ERROR_NOT_SUPPORTED;
}

int nvmlDeviceGetNvLinkRemotePciInfo_v2(nvmlDevice_t device, unsigned int link, void *pci)
{
    return NVML_ERROR_NOT_SUPPORTED;
}
