package ort

/*
#cgo CFLAGS: -I${SRCDIR}/include
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include "onnxruntime_c_api.h"

typedef const OrtApiBase* (*get_api_base_fn)(void);

// uniter_ort_api returns the OrtApi of the already loaded library at path (RTLD_NOLOAD: the
// library onnxruntime_go opened), or NULL.
static const OrtApi* uniter_ort_api(const char* path) {
	void* h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
	if (h == NULL) return NULL;
	get_api_base_fn f = (get_api_base_fn)dlsym(h, "OrtGetApiBase");
	if (f == NULL) return NULL;
	return f()->GetApi(ORT_API_VERSION);
}

// uniter_status_message copies a status' message and releases the status.
static char* uniter_status_message(const OrtApi* api, OrtStatus* st) {
	if (st == NULL) return NULL;
	char* msg = strdup(api->GetErrorMessage(st));
	api->ReleaseStatus(st);
	return msg;
}

// uniter_append_plugin_ep appends the plugin EP named ep_name on the GPU with the given device
// id to the session options. The environment is the process singleton (CreateEnv returns it
// with one more reference, released here).
static char* uniter_append_plugin_ep(const OrtApi* api, OrtSessionOptions* so, const char* ep_name,
		uint32_t device_id, const char* const* keys, const char* const* values, size_t n) {
	OrtEnv* env = NULL;
	char* err = uniter_status_message(api, api->CreateEnv(ORT_LOGGING_LEVEL_ERROR, "uniter", &env));
	if (err != NULL) return err;
	const OrtEpDevice* const* devices = NULL;
	size_t count = 0;
	err = uniter_status_message(api, api->GetEpDevices(env, &devices, &count));
	const OrtEpDevice* chosen = NULL;
	uint32_t gpu = 0;
	for (size_t i = 0; err == NULL && i < count; i++) {
		if (strcmp(api->EpDevice_EpName(devices[i]), ep_name) != 0) continue;
		const OrtHardwareDevice* hw = api->EpDevice_Device(devices[i]);
		if (api->HardwareDevice_Type(hw) != OrtHardwareDeviceType_GPU) continue;
		if (gpu++ == device_id) { chosen = devices[i]; break; }
	}
	if (err == NULL && chosen == NULL) {
		err = strdup("no GPU device of the registered CUDA execution provider matches the device id");
	}
	if (err == NULL) {
		err = uniter_status_message(api, api->SessionOptionsAppendExecutionProvider_V2(so, env, &chosen, 1, keys, values, n));
	}
	api->ReleaseEnv(env);
	return err;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"unsafe"

	onnx "github.com/yalue/onnxruntime_go"
)

// The CUDA execution provider of the npm-packaged ONNX Runtime build is a plugin EP library
// (it exports CreateEpFactories): the core library answers the classic CUDA options API with
// "not enabled in this build". onnxruntime_go v1.27 wraps plugin registration but not device
// selection, so this file does that one step through the C API of the loaded library.
const (
	cudaPluginName = "CUDAExecutionProvider"
	cudaPluginFile = "libonnxruntime_providers_cuda.so"
)

// cudaPlugin registers the CUDA plugin library once per Environment: the registration belongs
// to ONNX Runtime's environment and is gone once that is destroyed (Environment.Close), so a
// process that opens a second Environment registers it again.
type cudaPlugin struct {
	once sync.Once
	err  error
}

// appendCUDAPlugin registers the CUDA plugin library beside the core library (once per
// Environment) and appends it to opts with the given provider options.
func (e *Environment) appendCUDAPlugin(opts *onnx.SessionOptions, settings map[string]string) error {
	lib := filepath.Join(filepath.Dir(e.cfg.LibraryPath), cudaPluginFile)
	e.cudaPlugin.once.Do(func() {
		e.cudaPlugin.err = onnx.RegisterExecutionProviderLibrary(cudaPluginName, lib)
	})
	if e.cudaPlugin.err != nil {
		return fmt.Errorf("registering %s: %w", lib, e.cudaPlugin.err)
	}
	cpath := C.CString(e.cfg.LibraryPath)
	defer C.free(unsafe.Pointer(cpath))
	api := C.uniter_ort_api(cpath)
	if api == nil {
		return errors.New("cannot reach the ONNX Runtime C API of " + e.cfg.LibraryPath)
	}
	names := make([]string, 0, len(settings))
	for k := range settings {
		if k != "device_id" { // chosen through the device list, not an option
			names = append(names, k)
		}
	}
	sort.Strings(names)
	keys := make([]*C.char, len(names)+1)
	values := make([]*C.char, len(names)+1)
	for i, k := range names {
		keys[i], values[i] = C.CString(k), C.CString(settings[k])
	}
	defer func() {
		for i := range names {
			C.free(unsafe.Pointer(keys[i]))
			C.free(unsafe.Pointer(values[i]))
		}
	}()
	// onnxruntime_go's SessionOptions holds exactly one field, the native pointer.
	so := *(**C.OrtSessionOptions)(unsafe.Pointer(opts))
	ep := C.CString(cudaPluginName)
	defer C.free(unsafe.Pointer(ep))
	msg := C.uniter_append_plugin_ep(api, so, ep, C.uint32_t(e.cfg.CUDADeviceID),
		(**C.char)(unsafe.Pointer(&keys[0])), (**C.char)(unsafe.Pointer(&values[0])), C.size_t(len(names)))
	if msg != nil {
		defer C.free(unsafe.Pointer(msg))
		return errors.New(C.GoString(msg))
	}
	return nil
}

// notEnabled reports the classic API's answer for a build whose CUDA EP is a plugin.
func notEnabled(err error) bool {
	return err != nil && strings.Contains(err.Error(), "not enabled in this build")
}
