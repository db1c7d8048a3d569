#!/bin/sh
echo resize
