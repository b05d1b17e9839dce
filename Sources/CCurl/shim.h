#ifndef GREPTILE_MCP_CCURL_SHIM_H
#define GREPTILE_MCP_CCURL_SHIM_H

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

// curl_easy_setopt, curl_easy_getinfo and curl_multi_setopt are variadic C functions, which
// Swift cannot call; these typed wrappers are the whole of what CurlHTTP needs.

static inline CURLcode ccurl_easy_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode ccurl_easy_setopt_off(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode ccurl_easy_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode ccurl_easy_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode ccurl_easy_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value) {
    return curl_easy_setopt(handle, option, value);
}

typedef size_t (*ccurl_data_callback)(char *buffer, size_t size, size_t count, void *userdata);

static inline CURLcode ccurl_easy_setopt_data_callback(CURL *handle, CURLoption option, ccurl_data_callback value) {
    return curl_easy_setopt(handle, option, value);
}

static inline CURLcode ccurl_easy_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}

static inline CURLcode ccurl_easy_getinfo_off(CURL *handle, CURLINFO info, curl_off_t *value) {
    return curl_easy_getinfo(handle, info, value);
}

static inline CURLcode ccurl_easy_getinfo_pointer(CURL *handle, CURLINFO info, void **value) {
    return curl_easy_getinfo(handle, info, value);
}

static inline CURLMcode ccurl_multi_setopt_long(CURLM *handle, CURLMoption option, long value) {
    return curl_multi_setopt(handle, option, value);
}

// CURLMsg keeps its result in a union; Swift reads it through this.
static inline CURLcode ccurl_message_result(const CURLMsg *message) {
    return message->data.result;
}

// Compound macros Swift does not import.
static inline CURLcode ccurl_global_init(void) {
    return curl_global_init(CURL_GLOBAL_DEFAULT);
}

static inline CURLcode ccurl_easy_unpause(CURL *handle) {
    return curl_easy_pause(handle, CURLPAUSE_CONT);
}

static inline size_t ccurl_write_pause(void) {
    return CURL_WRITEFUNC_PAUSE;
}

// The multi handle's socket interface: curl says which sockets it waits on and when it wants
// to be called back; CurlMultiLoop waits on them with epoll.

static inline CURLMcode ccurl_multi_setopt_pointer(CURLM *handle, CURLMoption option, void *value) {
    return curl_multi_setopt(handle, option, value);
}

static inline CURLMcode ccurl_multi_setopt_socket_callback(CURLM *handle, curl_socket_callback value) {
    return curl_multi_setopt(handle, CURLMOPT_SOCKETFUNCTION, value);
}

static inline CURLMcode ccurl_multi_setopt_timer_callback(CURLM *handle, curl_multi_timer_callback value) {
    return curl_multi_setopt(handle, CURLMOPT_TIMERFUNCTION, value);
}

// Starts (`add` 1) or changes (`add` 0) the watch on `fd` for what curl's socket callback
// asked (CURL_POLL_IN, _OUT or _INOUT), or ends it (CURL_POLL_REMOVE).
static inline int ccurl_epoll_watch(int epoll, int fd, int what, int add) {
    if (what == CURL_POLL_REMOVE) {
        return epoll_ctl(epoll, EPOLL_CTL_DEL, fd, NULL);
    }
    struct epoll_event event = {0};
    event.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
    event.data.fd = fd;
    if (!add && epoll_ctl(epoll, EPOLL_CTL_MOD, fd, &event) == 0) {
        return 0;
    }
    // A watch the kernel dropped (its descriptor closed, the number reused) is started afresh.
    return (add || errno == ENOENT) ? epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) : -1;
}

static inline CURLcode ccurl_easy_setopt_close_socket(CURL *handle, curl_closesocket_callback value) {
    return curl_easy_setopt(handle, CURLOPT_CLOSESOCKETFUNCTION, value);
}

static inline CURLcode ccurl_easy_setopt_sockopt(CURL *handle, curl_sockopt_callback value) {
    return curl_easy_setopt(handle, CURLOPT_SOCKOPTFUNCTION, value);
}

// Waits up to `timeout_ms` (-1: without end) for at most `capacity` ready descriptors (at most
// 64); writes each one's descriptor and its readiness as curl's CURL_CSELECT_* bits. Returns
// how many, 0 on a timeout or an interrupted wait.
static inline int ccurl_epoll_wait(int epoll, int *fds, int *readiness, int capacity, int timeout_ms) {
    struct epoll_event events[64];
    int count = epoll_wait(epoll, events, capacity < 64 ? capacity : 64, timeout_ms);
    for (int index = 0; index < count; index++) {
        uint32_t ready = events[index].events;
        fds[index] = events[index].data.fd;
        readiness[index] = ((ready & (EPOLLIN | EPOLLHUP)) ? CURL_CSELECT_IN : 0)
            | ((ready & EPOLLOUT) ? CURL_CSELECT_OUT : 0)
            | ((ready & EPOLLERR) ? CURL_CSELECT_ERR : 0);
    }
    return count < 0 ? 0 : count;
}

static inline int ccurl_epoll_create(void) {
    return epoll_create1(EPOLL_CLOEXEC);
}

// An eventfd that wakes the loop from another thread.
static inline int ccurl_wake_create(int epoll) {
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) return -1;
    struct epoll_event event = {0};
    event.events = EPOLLIN;
    event.data.fd = fd;
    if (epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static inline void ccurl_wake_signal(int fd) {
    eventfd_write(fd, 1);
}

static inline void ccurl_wake_drain(int fd) {
    eventfd_t value;
    eventfd_read(fd, &value);
}

static inline void ccurl_set_cloexec(int fd) {
    fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
}

static inline void ccurl_close(int fd) {
    close(fd);
}

#endif
