// librabbitmq 0.11 for Swift: the headers, plus wrappers for what Swift cannot call or import.
#ifndef VIRTMETER_CRABBITMQ_SHIM_H
#define VIRTMETER_CRABBITMQ_SHIM_H

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <amqp_ssl_socket.h>

// amqp_login is variadic (the SASL method's arguments): Swift cannot call it. The client properties announce the
// `connection.blocked` capability, so a broker under a memory or disk alarm says so (connection.blocked/unblocked)
// instead of just no longer reading the socket.
static inline amqp_rpc_reply_t virtmeter_amqp_login_plain(amqp_connection_state_t state, const char *vhost,
                                                           int channel_max, int frame_max, int heartbeat,
                                                           const char *user, const char *password) {
    amqp_table_entry_t capability;
    capability.key = amqp_cstring_bytes("connection.blocked");
    capability.value.kind = AMQP_FIELD_KIND_BOOLEAN;
    capability.value.value.boolean = 1;
    amqp_table_entry_t property;
    property.key = amqp_cstring_bytes("capabilities");
    property.value.kind = AMQP_FIELD_KIND_TABLE;
    property.value.value.table.num_entries = 1;
    property.value.value.table.entries = &capability;
    amqp_table_t properties = {1, &property};
    return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat, &properties,
                                      AMQP_SASL_METHOD_PLAIN, user, password);
}

// The method ids are cast macros, which Swift does not import.
static const amqp_method_number_t virtmeter_amqp_basic_ack = AMQP_BASIC_ACK_METHOD;
static const amqp_method_number_t virtmeter_amqp_basic_nack = AMQP_BASIC_NACK_METHOD;
static const amqp_method_number_t virtmeter_amqp_basic_return = AMQP_BASIC_RETURN_METHOD;
static const amqp_method_number_t virtmeter_amqp_channel_close = AMQP_CHANNEL_CLOSE_METHOD;
static const amqp_method_number_t virtmeter_amqp_channel_close_ok = AMQP_CHANNEL_CLOSE_OK_METHOD;
static const amqp_method_number_t virtmeter_amqp_connection_close = AMQP_CONNECTION_CLOSE_METHOD;
static const amqp_method_number_t virtmeter_amqp_connection_close_ok = AMQP_CONNECTION_CLOSE_OK_METHOD;
static const amqp_method_number_t virtmeter_amqp_connection_blocked = AMQP_CONNECTION_BLOCKED_METHOD;
static const amqp_method_number_t virtmeter_amqp_connection_unblocked = AMQP_CONNECTION_UNBLOCKED_METHOD;

#endif
