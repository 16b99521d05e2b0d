export interface LabCa {
  dir: string;
  caCert: string;
  caKey: string;
  cert: string;
  key: string;
}
export function makeCa(dir: string): LabCa;
export function issueCert(ca: Pick<LabCa, "dir" | "caCert" | "caKey">, name: string): { cert: string; key: string };
