import { host } from "./host.mjs";
export const progress = (fraction, message) => host().progress.push([fraction, message]);
export const partial = (data) => host().partials.push(JSON.parse(data));
export const log = (level, message) => host().logs.push([level, message]);
