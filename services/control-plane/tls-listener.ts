import { clone, create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { TransportSocketSchema } from "../../gen/envoy/config/core/v3/base_pb.js";
import { ListenerSchema, type Listener } from "../../gen/envoy/config/listener/v3/listener_pb.js";
import { DownstreamTlsContextSchema } from "../../gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.js";

/** Envoy's public TLS listener: its port and the PEM files of its certificate chain and key (paths on Envoy's machine). */
export interface EdgeTlsListenerOptions {
  readonly port: number;
  readonly certFile: string;
  readonly keyFile: string;
}

/**
 * The edge listener again, on a TLS port: the same filters and routes behind a downstream TLS
 * context offering ALPN h2 and http/1.1, so browsers (which speak HTTP/2 only over TLS) get
 * HTTP/2 and can hold many streams on one connection. The plain listener stays as it is.
 */
export function edgeTlsListener(plain: Listener, tls: EdgeTlsListenerOptions): Listener {
  const listener = clone(ListenerSchema, plain);
  listener.name = `${plain.name}-tls`;
  const address = listener.address?.address;
  if (address?.case !== "socketAddress") throw new Error(`edge listener ${plain.name} has no socket address`);
  address.value.portSpecifier = { case: "portValue", value: tls.port };
  const transportSocket = create(TransportSocketSchema, {
    name: "envoy.transport_sockets.tls",
    configType: {
      case: "typedConfig" as const,
      value: anyPack(
        DownstreamTlsContextSchema,
        create(DownstreamTlsContextSchema, {
          commonTlsContext: {
            alpnProtocols: ["h2", "http/1.1"],
            tlsCertificates: [
              {
                certificateChain: { specifier: { case: "filename", value: tls.certFile } },
                privateKey: { specifier: { case: "filename", value: tls.keyFile } },
              },
            ],
          },
        }),
      ),
    },
  });
  for (const chain of listener.filterChains) chain.transportSocket = transportSocket;
  return listener;
}
